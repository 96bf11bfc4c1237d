/** getToken keeps a Subscriber's session alive past its token (docs/PROTOCOL.md §2.7). */

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, test } from "node:test";
import { Backoff, Subscriber, type StateEvent } from "../src/index.js";
import { ServerProcess, tempDatabase } from "./server.js";

const SECRET = "test-secret-of-at-least-32-bytes-for-hs256";
const FAST = new Backoff({ baseMs: 50, capMs: 200, afterAbortMs: 300 });

/** An HS256 token of `ttl` seconds (warned about a tenth of that before it runs out). */
function shortToken(sub: string, ttl = 8): { token: string; exp: number } {
  const b64 = (value: object | Buffer) =>
    (Buffer.isBuffer(value) ? value : Buffer.from(JSON.stringify(value))).toString("base64url");
  const iat = Math.floor(Date.now() / 1000);
  const exp = iat + ttl;
  const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, iat, exp })}`;
  return { token: `${input}.${b64(createHmac("sha256", SECRET).update(input).digest())}`, exp };
}

const db = tempDatabase();
let server: ServerProcess;

before(async () => {
  server = await new ServerProcess(db.url, ["--jwt-secret", SECRET]).start();
});

after(async () => {
  await server.kill();
  db.cleanup();
});

test("getToken refreshes the session in-band, past the first token's expiry", { timeout: 40_000 }, async () => {
  const expiries: number[] = [];
  let third: () => void = () => {};
  const thirdCall = new Promise<void>((resolve) => (third = resolve));
  const events: StateEvent[] = [];
  const subscriber = new Subscriber({
    target: server.address,
    backoff: FAST,
    onState: (e) => events.push(e),
    getToken: async () => {
      const { token, exp } = shortToken("ts-alice");
      expiries.push(exp);
      if (expiries.length === 3) third();
      return token;
    },
  });
  try {
    await subscriber.waitConnected();
    await thirdCall; // connect, one refresh, and the next refresh: the first token is gone
    assert.ok(Date.now() / 1000 > expiries[0]!, "the first token has run out");
    assert.equal(events.filter((e) => e.kind === "connected").length, 1);
    assert.equal(events.filter((e) => e.kind === "disconnected").length, 0);
  } finally {
    await subscriber.close();
  }
});
