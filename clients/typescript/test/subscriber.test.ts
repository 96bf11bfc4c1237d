/** The TypeScript client against real server processes: receive, mark read, resume. */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Backoff, CommandError, Publisher, Subscriber, type StateEvent } from "../src/index.js";
import { ServerProcess, tempDatabase } from "./server.js";

const FAST = new Backoff({ baseMs: 50, capMs: 200, afterAbortMs: 300 });

/** Records state events and lets a test wait for the n-th one that matches. */
class StateLog {
  readonly events: StateEvent[] = [];
  private waiters: (() => void)[] = [];

  readonly listener = (event: StateEvent): void => {
    this.events.push(event);
    for (const wake of this.waiters.splice(0)) wake();
  };

  async waitFor(predicate: (e: StateEvent) => boolean, count = 1, after = 0): Promise<StateEvent> {
    for (;;) {
      const matching = this.events.slice(after).filter(predicate);
      if (matching.length >= count) return matching[count - 1]!;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }
}

async function take(subscriber: Subscriber, count: number): Promise<bigint[]> {
  const ids: bigint[] = [];
  while (ids.length < count) {
    const result = await subscriber.next();
    assert.equal(result.done, false);
    if (!result.done) ids.push(result.value.id);
  }
  return ids;
}

async function createMany(publisher: Publisher, user: string, ...titles: string[]): Promise<bigint[]> {
  const ids: bigint[] = [];
  for (const title of titles) ids.push((await publisher.create(user, "t", title)).notification.id);
  return ids;
}

const db = tempDatabase();
let server: ServerProcess;

before(async () => {
  server = await new ServerProcess(db.url).start();
});

after(async () => {
  await server.kill();
  db.cleanup();
});

test("connects, receives queued and live notifications, marks one read", { timeout: 30_000 }, async () => {
  const publisher = new Publisher({ target: server.address });
  const marked: bigint[] = [];
  const subscriber = new Subscriber({ target: server.address, user: "42", backoff: FAST, onMarkedRead: (id) => marked.push(id) });
  try {
    const queued = await publisher.create("42", "welcome", "Hello", { data: { plan: "pro", n: 1 } });
    const info = await subscriber.waitConnected();
    assert.equal(info.userId, "42");
    assert.equal(info.queued, 1);

    const first = await subscriber.next();
    assert.equal(first.done, false);
    if (first.done) return;
    assert.equal(first.value.id, queued.notification.id);
    assert.deepEqual(first.value.data, { plan: "pro", n: 1 });

    const live = await publisher.create("42", "alert", "Now", { priority: "high", message: "body" });
    const second = await subscriber.next();
    assert.ok(!second.done && second.value.id === live.notification.id && second.value.priority === "high");

    await subscriber.markRead(first.value.id);
    assert.deepEqual(marked, [first.value.id]);
    await assert.rejects(subscriber.markRead(first.value.id + 1000n), (err: unknown) => {
      return err instanceof CommandError && err.code === "not_found";
    });

    const only = await subscriber.subscribe(["keep"]);
    assert.deepEqual([...(only.types ?? [])], ["keep"]);
    await publisher.create("42", "drop", "filtered out");
    const kept = await publisher.create("42", "keep", "kept");
    assert.deepEqual(await take(subscriber, 1), [kept.notification.id]);
  } finally {
    await subscriber.close();
    publisher.close();
  }
});

test("a server that stops sending heartbeats is dropped and reconnected", { timeout: 30_000 }, async () => {
  const hbDb = tempDatabase();
  const frozen = await new ServerProcess(hbDb.url, ["--heartbeat-interval", "0.3"]).start();
  const log = new StateLog();
  const subscriber = new Subscriber({
    target: frozen.address,
    user: "hb",
    backoff: FAST,
    connectTimeoutMs: 1000,
    onState: log.listener,
  });
  const publisher = new Publisher({ target: frozen.address });
  try {
    assert.equal((await subscriber.waitConnected()).heartbeatInterval, 0.3);
    let position = log.events.length;
    frozen.signal("SIGSTOP");
    const dead = await log.waitFor((e) => e.kind === "disconnected" && e.reason === "heartbeat_timeout", 1, position);
    assert.ok(dead.kind === "disconnected" && dead.willReconnect);
    await log.waitFor((e) => e.kind === "disconnected" && e.reason === "connect_timeout", 1, position);
    position = log.events.length;
    frozen.signal("SIGCONT");
    await log.waitFor((e) => e.kind === "connected", 1, position);
    const created = await publisher.create("hb", "t", "after the freeze");
    assert.deepEqual(await take(subscriber, 1), [created.notification.id]);
  } finally {
    frozen.signal("SIGCONT");
    await subscriber.close();
    publisher.close();
    await frozen.kill();
    hbDb.cleanup();
  }
});

test("reconnects after a server restart and resumes without loss or duplicates", { timeout: 45_000 }, async () => {
  const log = new StateLog();
  // The restarted server binds a new port; the subscriber learns it only once the
  // notifications "created meanwhile" exist, so they are surely created while it is away.
  let current = server.address;
  const subscriber = new Subscriber({
    target: () => current,
    user: "u1",
    backoff: FAST,
    connectTimeoutMs: 2000,
    onState: log.listener,
  });
  let publisher = new Publisher({ target: server.address });
  try {
    await subscriber.waitConnected();
    const before = await createMany(publisher, "u1", "b1", "b2", "b3");
    const got = await take(subscriber, 3);
    publisher.close();
    // b1 and b2 are processed; b3 was handed out but not processed yet.
    assert.equal(subscriber.lastProcessedId, before[1]);

    await server.kill();
    await log.waitFor((e) => e.kind === "disconnected");
    server = await new ServerProcess(db.url).start();
    publisher = new Publisher({ target: server.address });
    const meanwhile = await createMany(publisher, "u1", "m1", "m2", "m3");
    current = server.address;
    const resumed = await log.waitFor((e) => e.kind === "connected", 2);
    // since = b2: the server replays b3 (a duplicate, dropped) and m1..m3, and b1/b2
    // too if it died before recording their delivery (dropped as well).
    assert.ok(resumed.kind === "connected" && resumed.info.queued >= 4);
    const later = await createMany(publisher, "u1", "a1", "a2");
    got.push(...(await take(subscriber, 5)));
    const sentinel = await createMany(publisher, "u1", "sentinel");
    got.push(...(await take(subscriber, 1)));

    assert.deepEqual(got, [...before, ...meanwhile, ...later, ...sentinel]);
  } finally {
    await subscriber.close();
    publisher.close();
  }
});

test("asks for its whole filter at a reconnect: all but these, or no type at all", { timeout: 30_000 }, async () => {
  const log = new StateLog();
  let current = server.address;
  const subscriber = new Subscriber({ target: () => current, user: "f1", backoff: FAST, onState: log.listener });
  const publisher = new Publisher({ target: server.address });
  try {
    await subscriber.waitConnected();
    await subscriber.unsubscribe(["x"]); // all but x
    current = "127.0.0.1:1"; // nothing answers there: the user stays offline meanwhile
    await publisher.disconnect("f1");
    await publisher.create("f1", "x", "refused");
    await publisher.create("f1", "y", "admitted");
    current = server.address;
    const back = await log.waitFor((e) => e.kind === "connected", 2);
    assert.ok(back.kind === "connected" && back.info.queued === 1, "the replay holds only what the filter admits");
    const next = await subscriber.next();
    assert.ok(!next.done && next.value.type === "y");

    const none = await subscriber.subscribe(["z"]);
    await subscriber.unsubscribe(["z"]); // only z, minus z: no type at all
    assert.equal(none.types?.size, 1);
    current = "127.0.0.1:1";
    await publisher.disconnect("f1");
    await publisher.create("f1", "y", "refused too");
    current = server.address;
    const again = await log.waitFor((e) => e.kind === "connected", 3);
    assert.ok(again.kind === "connected" && again.info.queued === 0);
  } finally {
    await subscriber.close();
    publisher.close();
  }
});
