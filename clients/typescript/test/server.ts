/** Starts real `tidings serve --role grpc` processes for the tests, on SQLite files. */

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const PYTHON = process.env.TIDINGS_PYTHON ?? join(ROOT, ".venv/bin/python");
const LISTENING = /grpc listening on (\S+)/;

/** A temporary directory with a SQLite database URL in it. */
export function tempDatabase(): { url: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), "tidings-ts-"));
  return { url: `sqlite+aiosqlite:///${join(dir, "tidings.db")}`, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export class ServerProcess {
  address = "";
  readonly log: string[] = [];
  private child: ChildProcess | undefined;

  constructor(
    readonly databaseUrl: string,
    readonly args: readonly string[] = [],
  ) {}

  /** Start the server and wait for its `grpc listening on HOST:PORT` line. */
  start(timeoutMs = 20_000): Promise<this> {
    const child = spawn(
      PYTHON,
      ["-m", "tidingsd.cli", "serve", "--role", "grpc", "--insecure", "--grpc-addr", "127.0.0.1:0",
       "--database-url", this.databaseUrl, ...this.args],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    this.child = child;
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => {
        this.kill();
        reject(new Error(`server did not start in ${timeoutMs} ms:\n${this.log.join("\n")}`));
      }, timeoutMs);
      let pending = "";
      const onData = (chunk: Buffer) => {
        pending += chunk.toString();
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const line of lines) {
          this.log.push(line);
          const match = LISTENING.exec(line);
          if (match?.[1] && !this.address) {
            this.address = match[1];
            clearTimeout(timer);
            resolvePromise(this);
          }
        }
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.once("exit", (code) => {
        clearTimeout(timer);
        if (!this.address) reject(new Error(`server exited with ${code}:\n${this.log.join("\n")}`));
      });
    });
  }

  /** Send a signal (SIGSTOP freezes the server; SIGCONT thaws it). */
  signal(name: NodeJS.Signals): void {
    this.child?.kill(name);
  }

  /** `kill -9`, and wait until the process is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }
}
