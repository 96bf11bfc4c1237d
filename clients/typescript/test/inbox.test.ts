/** The TypeScript Inbox and the Subscriber's inbox commands and events against a real server. */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Backoff, CommandError, Inbox, Publisher, RpcError, Subscriber, type InboxEvent } from "../src/index.js";
import { ServerProcess, tempDatabase } from "./server.js";

const FAST = new Backoff({ baseMs: 50, capMs: 200, afterAbortMs: 300 });

/** Records inbox events and lets a test wait for one equal to an expected event. */
class EventLog {
  readonly events: InboxEvent[] = [];
  private waiters: (() => void)[] = [];

  readonly listener = (event: InboxEvent): void => {
    this.events.push(event);
    for (const wake of this.waiters.splice(0)) wake();
  };

  async waitFor(expected: InboxEvent): Promise<void> {
    for (;;) {
      if (this.events.some((e) => isDeepStrictEqual(e, expected))) return;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }
}

function isDeepStrictEqual(a: unknown, b: unknown): boolean {
  try {
    assert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
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

test("create carries expiresAt and ignoreMutes; a past expiresAt is refused", { timeout: 30_000 }, async () => {
  const publisher = new Publisher({ target: server.address });
  try {
    const later = new Date(Math.floor(Date.now() / 1000) * 1000 + 3_600_000);
    const { notification } = await publisher.create("ts-create", "alert", "Sign-in", { expiresAt: later, ignoreMutes: true });
    assert.equal(notification.expiresAt?.getTime(), later.getTime());
    assert.equal(notification.ignoreMutes, true);
    assert.equal(notification.seen, false);
    assert.equal(notification.archived, false);
    await assert.rejects(
      publisher.create("ts-create", "alert", "Too late", { expiresAt: new Date() }),
      (err: unknown) => err instanceof RpcError && err.field === "expires_at",
    );
    assert.equal(await publisher.broadcast("alert", "Both", { userIds: ["ts-create", "ts-other"] }, { ignoreMutes: true, expiresAt: later }), 2n);
  } finally {
    publisher.close();
  }
});

test("the Inbox: counts, seen, mark all read, archive, delete, filters, preferences", { timeout: 30_000 }, async () => {
  const publisher = new Publisher({ target: server.address });
  const inbox = new Inbox({ target: server.address, user: "ts-inbox" });
  try {
    const ids: bigint[] = [];
    for (const [type, priority] of [["comment", "low"], ["digest", "high"], ["comment", "urgent"]] as const) {
      ids.push((await publisher.create("ts-inbox", type, type, { priority })).notification.id);
    }
    const [a, b, c] = ids as [bigint, bigint, bigint];
    assert.deepEqual(await inbox.counts(), {
      unread: 3n,
      unseen: 3n,
      byType: { comment: { unread: 2n, unseen: 2n }, digest: { unread: 1n, unseen: 1n } },
    });
    assert.deepEqual(await inbox.markSeen(b), { upToId: b, changed: 2n });
    assert.deepEqual((await inbox.list({ seen: false })).notifications.map((n) => n.id), [c]);
    assert.deepEqual(await inbox.markSeen(), { upToId: c, changed: 1n });

    assert.deepEqual(await inbox.markAllRead({ notificationType: "comment" }), { upToId: c, changed: 2n });
    assert.deepEqual((await inbox.list({ read: false })).notifications.map((n) => n.id), [b]);
    assert.deepEqual((await inbox.list({ types: ["comment"], priorities: ["urgent"] })).notifications.map((n) => n.id), [c]);

    const archived = await inbox.archive(a);
    assert.ok(archived.archived && archived.archivedAt !== undefined);
    assert.deepEqual((await inbox.list()).notifications.map((n) => n.id), [c, b]);
    assert.deepEqual((await inbox.list({ archived: true })).notifications.map((n) => n.id), [a]);
    assert.equal((await inbox.unarchive(a)).archived, false);
    await inbox.delete(b);
    assert.deepEqual((await inbox.list()).notifications.map((n) => n.id), [c, a]);
    await assert.rejects(inbox.delete(b), (err: unknown) => err instanceof RpcError && err.errorCode === "not_found");

    const page = await inbox.list({ limit: 1 });
    assert.ok(page.hasMore && page.nextBeforeId === c);
    assert.deepEqual((await inbox.list({ limit: 1, beforeId: page.nextBeforeId })).notifications.map((n) => n.id), [a]);

    assert.deepEqual(await inbox.updatePreferences(["digest", "build", "digest"]), { mutedTypes: ["build", "digest"] });
    assert.deepEqual(await inbox.preferences(), { mutedTypes: ["build", "digest"] });
    await publisher.create("ts-inbox", "digest", "muted");
    const counts = await inbox.counts();
    assert.equal(counts.unread, 0n); // the muted digest is not in the totals
    assert.deepEqual(counts.byType["digest"], { unread: 1n, unseen: 1n });
    await assert.rejects(inbox.updatePreferences(["x".repeat(65)]), (err: unknown) => err instanceof RpcError && err.field === "muted_types");
  } finally {
    inbox.close();
    publisher.close();
  }
});

test("Subscriber inbox commands are answered and every session hears the events", { timeout: 30_000 }, async () => {
  const publisher = new Publisher({ target: server.address });
  const mine = new EventLog();
  const other = new EventLog();
  const sub = new Subscriber({ target: server.address, user: "ts-live", backoff: FAST, onEvent: mine.listener });
  const device = new Subscriber({ target: server.address, user: "ts-live", backoff: FAST, onEvent: other.listener });
  try {
    await sub.waitConnected();
    await device.waitConnected();
    const a = (await publisher.create("ts-live", "comment", "a")).notification.id;
    const b = (await publisher.create("ts-live", "digest", "b")).notification.id;

    assert.deepEqual(await sub.getCounts(), {
      unread: 2n,
      unseen: 2n,
      byType: { comment: { unread: 1n, unseen: 1n }, digest: { unread: 1n, unseen: 1n } },
    });
    assert.equal(await sub.markSeen(), b);
    await other.waitFor({ kind: "seen", upToId: b });
    assert.equal(await sub.markAllRead({ notificationType: "digest" }), b);
    await other.waitFor({ kind: "allMarkedRead", upToId: b, notificationType: "digest" });
    await sub.archive(a);
    await other.waitFor({ kind: "archived", notificationId: a });
    await sub.unarchive(a);
    await other.waitFor({ kind: "unarchived", notificationId: a });
    await sub.delete(b);
    await other.waitFor({ kind: "deleted", notificationId: b });
    assert.deepEqual(await sub.updatePreferences(["news", "build"]), ["build", "news"]);
    await other.waitFor({ kind: "preferencesUpdated", mutedTypes: ["build", "news"] });
    await assert.rejects(sub.archive(999_999), (err: unknown) => err instanceof CommandError && err.code === "not_found");

    assert.deepEqual(mine.events, [
      { kind: "seen", upToId: b },
      { kind: "allMarkedRead", upToId: b, notificationType: "digest" },
      { kind: "archived", notificationId: a },
      { kind: "unarchived", notificationId: a },
      { kind: "deleted", notificationId: b },
      { kind: "preferencesUpdated", mutedTypes: ["build", "news"] },
    ]);

    // muted: stored but not pushed, unless sent with ignoreMutes
    const muted = (await publisher.create("ts-live", "news", "muted")).notification.id;
    const alert = await publisher.create("ts-live", "news", "security", { ignoreMutes: true });
    const ids: bigint[] = [];
    for (;;) {
      const next = await sub.next();
      assert.equal(next.done, false);
      if (next.done) return;
      ids.push(next.value.id);
      if (next.value.id === alert.notification.id) break;
    }
    assert.ok(!ids.includes(muted), `the muted one was pushed: ${ids}`);
  } finally {
    await sub.close();
    await device.close();
    publisher.close();
  }
});
