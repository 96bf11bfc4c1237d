// Unit tests of tidings.js with a fake WebSocket and mocked timers: `node --test clients/browser/test/`.
import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";

import { CloseCode, TidingsClient, TidingsHttpError, TidingsRest, backoffDelay } from "../tidings.js";

class FakeSocket {
  static all = [];

  constructor(url) {
    this.url = new URL(url);
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.all.push(this);
  }

  send(text) {
    this.sent.push(JSON.parse(text));
  }

  close(code, reason) {
    this.readyState = 3;
    this.closedWith = { code, reason };
  }

  // --- what the server does
  greet(extra = {}) {
    this.readyState = 1;
    this.receive({
      type: "connection_established", user_id: "42", connection_id: "n-1",
      heartbeat_interval: 30, queued: 0, truncated: false,
      server_time: "2026-11-25T22:52:07.123Z", ...extra,
    });
  }

  receive(message) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }

  serverClose(code, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

const last = () => FakeSocket.all.at(-1);
const notification = (id, type = "t") => ({
  type: "notification",
  notification: { id, user_id: "42", type, title: `n${id}`, message: "", data: {},
    priority: "normal", created_at: "2026-11-25T22:52:07.123Z", read: false, read_at: null },
});

function client(options = {}) {
  return new TidingsClient({
    url: "ws://example.test/api/v1/ws/notifications",
    WebSocket: FakeSocket,
    ...options,
  });
}

function collect(target, name) {
  const seen = [];
  target.addEventListener(name, (event) => seen.push(event.detail));
  return seen;
}

beforeEach(() => {
  FakeSocket.all = [];
  mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"] });
});

afterEach(() => {
  mock.timers.reset();
});

test("connects with the credentials and reports the states", () => {
  const c = client({ userId: 42, token: "tok" });
  const states = collect(c, "state");
  c.connect();
  assert.equal(last().url.searchParams.get("user_id"), "42");
  assert.equal(last().url.searchParams.get("token"), "tok");
  assert.equal(last().url.searchParams.has("since"), false);
  last().greet();
  assert.deepEqual(states.map((s) => s.state), ["connecting", "open"]);
  assert.equal(c.connection.connection_id, "n-1");
  c.close();
  assert.equal(c.state, "closed");
});

test("drops duplicate notifications and resumes with since = the last id", () => {
  const c = client({ since: 3 });
  const got = collect(c, "notification");
  c.connect();
  assert.equal(last().url.searchParams.get("since"), "3");
  last().greet();
  for (const id of [4, 5, 5, 4, 6]) last().receive(notification(id));
  assert.deepEqual(got.map((n) => n.id), [4, 5, 6]);
  assert.equal(c.lastId, 6);

  last().serverClose(CloseCode.GOING_AWAY);
  assert.equal(c.state, "waiting");
  mock.timers.tick(c.options.initialDelay);
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(last().url.searchParams.get("since"), "6");
  last().greet();
  last().receive(notification(6)); // replayed again: at-least-once, shown once
  last().receive(notification(7));
  assert.deepEqual(got.map((n) => n.id), [4, 5, 6, 7]);
});

test("backoff grows with full jitter up to the cap", () => {
  assert.equal(backoffDelay(0, 500, 30_000, () => 0.999), 499);
  assert.equal(backoffDelay(3, 500, 30_000, () => 0.5), 2000);
  assert.equal(backoffDelay(20, 500, 30_000, () => 0.999), 29_970);
  assert.equal(backoffDelay(5, 500, 30_000, () => 0), 0);
});

test("retries keep backing off until a session is established", () => {
  const c = client({ initialDelay: 100, maxDelay: 1000 });
  const states = collect(c, "state");
  c.connect();
  for (let i = 0; i < 5; i += 1) {
    last().serverClose(1011);
    mock.timers.tick(1000);
  }
  assert.equal(FakeSocket.all.length, 6);
  const delays = states.filter((s) => s.state === "waiting").map((s) => s.retryIn);
  assert.ok(delays.every((d) => d >= 0 && d < 1000), delays);
  last().greet();
  assert.equal(c._attempt, 0);
});

test("1008 stops for good", () => {
  const c = client();
  const states = collect(c, "state");
  c.connect();
  last().receive({ type: "error", code: "unauthorized", message: "expired" });
  last().serverClose(CloseCode.UNAUTHORIZED, "unauthorized");
  mock.timers.tick(60_000);
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(c.state, "closed");
  assert.equal(states.at(-1).code, 1008);
});

test("an operator disconnect (4001) waits before reconnecting", () => {
  const c = client({ disconnectedDelay: 10_000 });
  c.connect();
  last().greet();
  last().serverClose(CloseCode.DISCONNECTED);
  mock.timers.tick(4_999);
  assert.equal(FakeSocket.all.length, 1);
  mock.timers.tick(5_001);
  assert.equal(FakeSocket.all.length, 2);
});

test("a socket silent for twice the heartbeat interval is replaced", () => {
  const c = client({ initialDelay: 1 });
  c.connect();
  const first = last();
  first.greet({ heartbeat_interval: 1 });
  mock.timers.tick(1500);
  first.receive({ type: "heartbeat", timestamp: "2026-11-25T22:52:08.000Z" });
  mock.timers.tick(1500);
  assert.equal(first.closedWith, null); // heard from 1.5 s ago: alive
  mock.timers.tick(1000);
  assert.equal(first.closedWith?.code, CloseCode.HEARTBEAT_TIMEOUT);
  mock.timers.tick(10);
  assert.equal(FakeSocket.all.length, 2);
});

test("commands are sent only while open", () => {
  const c = client();
  c.connect();
  assert.equal(c.markRead(1), false);
  last().greet();
  assert.equal(c.markRead(1), true);
  assert.equal(c.subscribe(["a"]), true);
  assert.equal(c.unsubscribe(["b"]), true);
  assert.equal(c.ping(), true);
  assert.deepEqual(last().sent, [
    { type: "mark_read", notification_id: 1 },
    { type: "subscribe", notification_types: ["a"] },
    { type: "unsubscribe", notification_types: ["b"] },
    { type: "ping" },
  ]);
});

test("the type filter survives a reconnect", () => {
  const c = client({ initialDelay: 1 });
  c.connect();
  last().greet();
  last().receive({ type: "subscription_updated", notification_types: ["a", "b"], excluded_types: [] });
  last().serverClose(1001);
  mock.timers.tick(5);
  assert.equal(last().url.searchParams.get("types"), "a,b");

  last().greet();
  last().receive({ type: "subscription_updated", notification_types: null, excluded_types: ["x"] });
  last().serverClose(1001);
  mock.timers.tick(5);
  assert.equal(last().url.searchParams.has("types"), false);
  last().greet();
  assert.deepEqual(last().sent, [{ type: "unsubscribe", notification_types: ["x"] }]);

  last().receive({ type: "subscription_updated", notification_types: [], excluded_types: [] });
  last().serverClose(1001);
  mock.timers.tick(5);
  last().greet();
  assert.deepEqual(last().sent, [{ type: "subscribe", notification_types: [] }]);
});

test("server messages become events", () => {
  const c = client();
  const read = collect(c, "read");
  const errors = collect(c, "servererror");
  const pongs = collect(c, "pong");
  c.connect();
  last().greet();
  last().receive({ type: "notification_marked_read", notification_id: 9 });
  last().receive({ type: "error", code: "not_found", message: "no" });
  last().receive({ type: "pong", timestamp: "2026-11-25T22:52:07.123Z" });
  assert.deepEqual(read, [{ notification_id: 9 }]);
  assert.deepEqual(errors, [{ code: "not_found", message: "no" }]);
  assert.equal(pongs.length, 1);
  assert.equal(c.state, "open");
});

// Promise callbacks (getToken) run as microtasks: let them settle.
const settle = async () => {
  for (let i = 0; i < 5; i += 1) await Promise.resolve();
};

test("getToken gives every connection its token and refreshes before expiry", async () => {
  let n = 0;
  const c = client({ getToken: async () => `tok-${++n}` });
  const refreshed = collect(c, "tokenrefreshed");
  c.connect();
  await settle();
  assert.equal(last().url.searchParams.get("token"), "tok-1");
  last().greet();
  last().receive({ type: "token_expiring", expires_at: "2026-11-25T23:00:00.000Z" });
  await settle();
  assert.deepEqual(last().sent.at(-1), { type: "refresh", token: "tok-2" });
  last().receive({ type: "token_refreshed", expires_at: "2026-11-26T00:00:00.000Z" });
  assert.deepEqual(refreshed, [{ expires_at: "2026-11-26T00:00:00.000Z" }]);

  last().serverClose(CloseCode.TOKEN_EXPIRED, "token_expired"); // the refresh came too late
  assert.equal(c.state, "waiting");
  mock.timers.tick(c.options.initialDelay);
  await settle();
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(last().url.searchParams.get("token"), "tok-3");
  c.close();
});

test("4003 without getToken stops for good, like 1008", () => {
  const c = client({ token: "tok" });
  c.connect();
  last().greet();
  last().serverClose(CloseCode.TOKEN_EXPIRED, "token_expired");
  assert.equal(c.state, "closed");
  mock.timers.tick(60_000);
  assert.equal(FakeSocket.all.length, 1);
});

test("inbox commands are sent as the protocol's messages", () => {
  const c = client({ userId: 42 });
  c.connect();
  last().greet();
  const sent = last().sent;
  sent.length = 0;
  assert.equal(c.markSeen(), true);
  c.markSeen(7);
  c.markAllRead();
  c.markAllRead({ notificationType: "comment", upToId: 9 });
  c.archive(3);
  c.unarchive(3);
  c.delete(4);
  c.getCounts();
  c.updatePreferences(new Set(["digest"]));
  assert.deepEqual(sent, [
    { type: "mark_seen" },
    { type: "mark_seen", up_to_id: 7 },
    { type: "mark_all_read" },
    { type: "mark_all_read", notification_type: "comment", up_to_id: 9 },
    { type: "archive", notification_id: 3 },
    { type: "unarchive", notification_id: 3 },
    { type: "delete", notification_id: 4 },
    { type: "get_counts" },
    { type: "update_preferences", muted_types: ["digest"] },
  ]);
  c.close();
  assert.equal(c.archive(3), false); // not connected
});

test("inbox events reach their listeners", () => {
  const c = client({ userId: 42 });
  const names = ["seen", "readall", "archived", "unarchived", "deleted", "counts", "preferences"];
  const got = Object.fromEntries(names.map((name) => [name, collect(c, name)]));
  c.connect();
  const ws = last();
  ws.greet();
  ws.receive({ type: "notifications_seen", up_to_id: 12 });
  ws.receive({ type: "notifications_marked_read", up_to_id: 12, notification_type: null });
  ws.receive({ type: "notifications_marked_read", up_to_id: 10, notification_type: "comment" });
  ws.receive({ type: "notification_archived", notification_id: 5 });
  ws.receive({ type: "notification_unarchived", notification_id: 5 });
  ws.receive({ type: "notification_deleted", notification_id: 6 });
  ws.receive({ type: "counts", unread: 2, unseen: 1, by_type: { comment: { unread: 2, unseen: 1 } } });
  ws.receive({ type: "preferences_updated", muted_types: ["digest"] });
  assert.deepEqual(got, {
    seen: [{ up_to_id: 12 }],
    readall: [
      { up_to_id: 12, notification_type: null },
      { up_to_id: 10, notification_type: "comment" },
    ],
    archived: [{ notification_id: 5 }],
    unarchived: [{ notification_id: 5 }],
    deleted: [{ notification_id: 6 }],
    counts: [{ unread: 2, unseen: 1, by_type: { comment: { unread: 2, unseen: 1 } } }],
    preferences: [{ muted_types: ["digest"] }],
  });
  c.close();
});

/** A fetch that records requests and answers from a queue of [status, body]. */
function fakeFetch(answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, method: init.method, headers: init.headers, body: init.body ? JSON.parse(init.body) : undefined });
    const [status, body] = answers.shift() ?? [200, {}];
    return { status, ok: status < 300, json: async () => body };
  };
  return { calls, fetch };
}

test("TidingsRest calls the §6 endpoints with the credentials", async () => {
  const { calls, fetch } = fakeFetch([
    [200, { notifications: [], has_more: false }],
    [200, { unread: 1, unseen: 0, by_type: {} }],
    [200, { up_to_id: 9, seen: 3 }],
    [200, { up_to_id: 9, read: 2 }],
    [200, { id: 4, archived: true }],
    [200, { id: 4, archived: false }],
    [204, null],
    [200, { muted_types: ["a"] }],
    [200, { muted_types: ["a", "b"] }],
  ]);
  const rest = new TidingsRest({ baseUrl: "http://h", userId: 42, fetch });
  await rest.list({ types: ["a", "b"], priorities: ["high"], read: false, seen: true, archived: true,
    createdAfter: new Date("2026-01-01T00:00:00Z"), limit: 20, beforeId: 99 });
  assert.deepEqual(await rest.counts(), { unread: 1, unseen: 0, by_type: {} });
  assert.deepEqual(await rest.markSeen(), { up_to_id: 9, seen: 3 });
  await rest.markAllRead({ notificationType: "a" });
  await rest.archive(4);
  await rest.unarchive(4);
  assert.equal(await rest.delete(4), null);
  await rest.preferences();
  await rest.updatePreferences(["b", "a"]);
  assert.deepEqual(
    calls.map(({ method, url, body }) => [method, url, body]),
    [
      ["GET", "http://h/api/v1/notifications?type=a%2Cb&priority=high&read=false&seen=true&archived=true&created_after=2026-01-01T00%3A00%3A00.000Z&limit=20&before_id=99", undefined],
      ["GET", "http://h/api/v1/notifications/counts", undefined],
      ["POST", "http://h/api/v1/notifications/seen", {}],
      ["POST", "http://h/api/v1/notifications/read_all", { notification_type: "a" }],
      ["POST", "http://h/api/v1/notifications/4/archive", undefined],
      ["POST", "http://h/api/v1/notifications/4/unarchive", undefined],
      ["DELETE", "http://h/api/v1/notifications/4", undefined],
      ["GET", "http://h/api/v1/preferences", undefined],
      ["PUT", "http://h/api/v1/preferences", { muted_types: ["b", "a"] }],
    ],
  );
  assert.equal(calls[0].headers["X-Tidings-User"], "42");
});

test("TidingsRest rejects with the error's status, code and field", async () => {
  const { calls, fetch } = fakeFetch([
    [422, { error: { code: "invalid_request", message: "too long", field: "muted_types" } }],
    [404, { error: { code: "not_found", message: "no such notification" } }],
  ]);
  const rest = new TidingsRest({ getToken: async () => "jwt", fetch });
  await assert.rejects(rest.updatePreferences(["x".repeat(65)]), (err) =>
    err instanceof TidingsHttpError && err.status === 422 && err.field === "muted_types");
  await assert.rejects(rest.archive(1), (err) => err instanceof TidingsHttpError && err.code === "not_found");
  assert.equal(calls[0].headers.Authorization, "Bearer jwt");
});
