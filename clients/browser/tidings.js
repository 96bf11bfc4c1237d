/**
 * Tidings browser client: the WebSocket protocol of docs/PROTOCOL.md §5, no dependencies.
 *
 *   import { TidingsClient } from "/tidings.js";
 *   const client = new TidingsClient({ token });          // or { userId } in insecure mode
 *   // or { getToken: async () => fetchJwt() }: asked on each connect and before expiry
 *   client.addEventListener("notification", (e) => show(e.detail));
 *   client.connect();
 *
 * What it does for you:
 * - reconnects with exponential backoff and full jitter (capped), and resumes with
 *   `since` = the last notification id it handed you, so nothing is missed;
 * - hands each notification id out once (duplicates across reconnects are dropped);
 * - treats a connection that has been silent for 2 × heartbeat_interval as dead;
 * - waits `disconnectedDelay` before reconnecting after an operator disconnect (4001),
 *   and stops for good on 1008 (credentials refused);
 * - restores the session's type filter after a reconnect;
 * - with `getToken`, refreshes the session's token when the server warns that it
 *   expires (`token_expiring`, §2.7), and reconnects with a fresh token after 4003
 *   (`token_expired`); without it, 4003 ends the client like 1008.
 *
 * Events (all `CustomEvent`s, payload in `detail`):
 *   "state"        {state, code, reason, retryIn}   state: connecting | open | waiting | closed
 *   "connected"    the connection_established message
 *   "notification" the notification object (§3)
 *   "read"         {notification_id}               marked read by any session of the user
 *   "seen"         {up_to_id}                      the list was marked seen up to this id
 *   "readall"      {up_to_id, notification_type}   mark all read (type null: every type)
 *   "archived", "unarchived", "deleted"  {notification_id}
 *   "counts"       {unread, unseen, by_type}       the answer to getCounts()
 *   "preferences"  {muted_types}                   the user's muted types changed
 *   "subscription" {notification_types, excluded_types}
 *   "heartbeat", "pong"   {timestamp}
 *   "servererror"  {code, message}                 an `error` message; the session goes on
 *   "tokenexpiring" {expires_at}                   the session's token expires soon
 *   "tokenrefreshed" {expires_at}                  the server took the fresh token
 *
 * Every inbox event ("read" to "preferences", but "counts") comes from any session or
 * call of the user, on any node: update the page from the events, not from the calls.
 *
 * `TidingsRest` is the REST side (docs/PROTOCOL.md §6) for what a socket does not do:
 * the history page with its filters, counts, preferences, and the same marks when no
 * socket is open.
 */

const PATH = "/api/v1/ws/notifications";

/** Close codes with a meaning for the client. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  UNAUTHORIZED: 1008,
  TOO_BIG: 1009,
  ENGINE_UNAVAILABLE: 1011,
  TRY_AGAIN_LATER: 1013,
  DISCONNECTED: 4001,
  TOKEN_EXPIRED: 4003,
  HEARTBEAT_TIMEOUT: 4000, // used by this client when it gives up on a silent socket
});

const DEFAULTS = Object.freeze({
  url: null,
  token: null,
  getToken: null,
  userId: null,
  types: null,
  since: null,
  initialDelay: 500,
  maxDelay: 30_000,
  disconnectedDelay: 30_000,
  dedupeSize: 2_000,
  WebSocket: globalThis.WebSocket,
});

/** The socket URL for the page this runs on (ws:// or wss:// to the same host). */
export function defaultUrl() {
  const here = new URL(globalThis.location.href);
  here.protocol = here.protocol === "https:" ? "wss:" : "ws:";
  here.pathname = PATH;
  here.search = "";
  here.hash = "";
  return here.toString();
}

/** Backoff with full jitter: a random delay in [0, min(max, initial · 2^attempt)). */
export function backoffDelay(attempt, initial, max, random = Math.random) {
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

export class TidingsClient extends EventTarget {
  /** @param {Partial<typeof DEFAULTS>} options */
  constructor(options = {}) {
    super();
    this.options = { ...DEFAULTS, ...options };
    this.state = "closed";
    /** The largest notification id handed out; `since` on the next connect. */
    this.lastId = Number(this.options.since) || 0;
    this.connection = null; // the last connection_established message
    this._ws = null;
    this._attempt = 0;
    this._retryTimer = null;
    this._watchdog = null;
    this._lastFrameAt = 0;
    this._stopped = true;
    this._seen = new Set();
    this._token = null; // the latest token from getToken
    this._opening = null; // a getToken call a connect waits for
    /** The session filter: {only: string[] | null, excluded: string[]} (null = all types). */
    this._filter = this.options.types
      ? { only: [...this.options.types], excluded: [] }
      : { only: null, excluded: [] };
  }

  /** Open the connection (and keep it open until `close`). */
  connect() {
    this._stopped = false;
    if (this._ws === null && this._retryTimer === null && this._opening === null) this._open();
    return this;
  }

  /** Close for good: no reconnect. */
  close() {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._opening = null;
    if (this._ws !== null) this._ws.close(CloseCode.NORMAL, "client closed");
    this._teardown();
    this._setState("closed", { code: CloseCode.NORMAL, reason: "client closed" });
  }

  /** Ask the server to mark a notification read; false when not connected. */
  markRead(notificationId) {
    return this._send({ type: "mark_read", notification_id: notificationId });
  }

  /** Receive these types too (from "all types" mode: only these). */
  subscribe(types) {
    return this._send({ type: "subscribe", notification_types: [...types] });
  }

  /** Stop receiving these types. */
  unsubscribe(types) {
    return this._send({ type: "unsubscribe", notification_types: [...types] });
  }

  /** Mark the user's notifications seen up to `upToId` (default: the newest): the badge
   * clears. Every session hears "seen". False when not connected. */
  markSeen(upToId = 0) {
    return this._send(upToId ? { type: "mark_seen", up_to_id: upToId } : { type: "mark_seen" });
  }

  /** Mark every unread notification read, of `notificationType` only and up to `upToId`
   * when given. Every session hears one "readall". */
  markAllRead({ notificationType = null, upToId = 0 } = {}) {
    const message = { type: "mark_all_read" };
    if (notificationType) message.notification_type = notificationType;
    if (upToId) message.up_to_id = upToId;
    return this._send(message);
  }

  /** Archive one notification ("archived", or "servererror" not_found). */
  archive(notificationId) {
    return this._send({ type: "archive", notification_id: notificationId });
  }

  /** Bring an archived notification back ("unarchived"). */
  unarchive(notificationId) {
    return this._send({ type: "unarchive", notification_id: notificationId });
  }

  /** Delete one notification for good ("deleted"). */
  delete(notificationId) {
    return this._send({ type: "delete", notification_id: notificationId });
  }

  /** Ask for the counts (answered by "counts", to this session only). */
  getCounts() {
    return this._send({ type: "get_counts" });
  }

  /** Replace the user's muted types (answered by "preferences" on every session). */
  updatePreferences(mutedTypes) {
    return this._send({ type: "update_preferences", muted_types: [...mutedTypes] });
  }

  /** Ask for a pong. */
  ping() {
    return this._send({ type: "ping" });
  }

  /** Send the live session a fresh token (`token`, or `getToken`'s); false when not
   * connected. The server answers `tokenrefreshed`, or `servererror` `unauthorized`. */
  async refresh(token = null) {
    const fresh = token ?? (this.options.getToken ? await this.options.getToken() : null);
    if (!fresh) return false;
    this._token = fresh;
    return this._send({ type: "refresh", token: fresh });
  }

  // --- internals ------------------------------------------------------------------

  _url() {
    const url = new URL(this.options.url || defaultUrl());
    const { userId } = this.options;
    const token = this._token ?? this.options.token;
    if (token) url.searchParams.set("token", token);
    if (userId !== null && userId !== undefined) url.searchParams.set("user_id", String(userId));
    if (this.lastId > 0) url.searchParams.set("since", String(this.lastId));
    const only = this._filter.only;
    if (only !== null && only.length > 0) url.searchParams.set("types", only.join(","));
    return url.toString();
  }

  _open() {
    this._setState("connecting");
    if (!this.options.getToken) {
      this._openSocket();
      return;
    }
    const pending = Promise.resolve().then(() => this.options.getToken());
    this._opening = pending;
    pending.then(
      (token) => {
        if (this._opening !== pending || this._stopped) return;
        this._opening = null;
        this._token = token;
        this._openSocket();
      },
      (error) => {
        if (this._opening !== pending || this._stopped) return;
        this._opening = null;
        this._scheduleReconnect(CloseCode.ENGINE_UNAVAILABLE, `getToken failed: ${error}`);
      },
    );
  }

  _openSocket() {
    let ws;
    try {
      ws = new this.options.WebSocket(this._url());
    } catch (error) {
      this._scheduleReconnect(CloseCode.ENGINE_UNAVAILABLE, String(error));
      return;
    }
    this._ws = ws;
    ws.onmessage = (event) => this._onFrame(event.data);
    ws.onclose = (event) => {
      if (this._ws !== ws) return;
      this._teardown();
      this._onClose(event.code, event.reason);
    };
  }

  _onFrame(text) {
    this._lastFrameAt = Date.now();
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    switch (message.type) {
      case "connection_established":
        this._onEstablished(message);
        break;
      case "notification":
        this._onNotification(message.notification);
        break;
      case "notification_marked_read":
        this._emit("read", { notification_id: message.notification_id });
        break;
      case "notifications_seen":
        this._emit("seen", { up_to_id: message.up_to_id });
        break;
      case "notifications_marked_read":
        this._emit("readall", { up_to_id: message.up_to_id, notification_type: message.notification_type ?? null });
        break;
      case "notification_archived":
        this._emit("archived", { notification_id: message.notification_id });
        break;
      case "notification_unarchived":
        this._emit("unarchived", { notification_id: message.notification_id });
        break;
      case "notification_deleted":
        this._emit("deleted", { notification_id: message.notification_id });
        break;
      case "counts":
        this._emit("counts", { unread: message.unread, unseen: message.unseen, by_type: message.by_type || {} });
        break;
      case "preferences_updated":
        this._emit("preferences", { muted_types: [...(message.muted_types || [])] });
        break;
      case "subscription_updated":
        this._filter = {
          only: message.notification_types === null ? null : [...message.notification_types],
          excluded: [...(message.excluded_types || [])],
        };
        this._emit("subscription", message);
        break;
      case "heartbeat":
      case "pong":
        this._emit(message.type, { timestamp: message.timestamp });
        break;
      case "error":
        this._emit("servererror", { code: message.code, message: message.message });
        break;
      case "token_expiring":
        this._emit("tokenexpiring", { expires_at: message.expires_at });
        if (this.options.getToken) {
          this.refresh().catch((error) => this._emit("servererror", { code: "refresh_failed", message: String(error) }));
        }
        break;
      case "token_refreshed":
        this._emit("tokenrefreshed", { expires_at: message.expires_at });
        break;
      default:
        break;
    }
  }

  _onEstablished(message) {
    this.connection = message;
    this._attempt = 0;
    this._startWatchdog(Number(message.heartbeat_interval) || 30);
    this._setState("open");
    this._restoreFilter();
    this._emit("connected", message);
  }

  _restoreFilter() {
    // `types=` restored a non-empty "only" filter; the other shapes need a command.
    const { only, excluded } = this._filter;
    if (only !== null && only.length === 0) this.subscribe([]);
    else if (only === null && excluded.length > 0) this.unsubscribe(excluded);
  }

  _onNotification(notification) {
    const id = notification.id;
    if (this._seen.has(id)) return;
    this._seen.add(id);
    if (this._seen.size > this.options.dedupeSize) {
      // Sets iterate in insertion order: drop the oldest.
      this._seen.delete(this._seen.values().next().value);
    }
    if (id > this.lastId) this.lastId = id;
    this._emit("notification", notification);
  }

  _onClose(code, reason) {
    if (this._stopped) {
      this._setState("closed", { code, reason });
      return;
    }
    if (code === CloseCode.UNAUTHORIZED || (code === CloseCode.TOKEN_EXPIRED && !this.options.getToken)) {
      this._stopped = true;
      this._setState("closed", { code, reason: reason || "unauthorized" });
      return;
    }
    this._scheduleReconnect(code, reason);
  }

  _scheduleReconnect(code, reason) {
    const { initialDelay, maxDelay, disconnectedDelay } = this.options;
    let delay = backoffDelay(this._attempt, initialDelay, maxDelay);
    if (code === CloseCode.DISCONNECTED) {
      // An operator asked us to go: come back later, not in a stampede.
      delay = Math.floor(disconnectedDelay * (0.5 + Math.random() / 2));
    }
    this._attempt += 1;
    this._setState("waiting", { code, reason, retryIn: delay });
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (!this._stopped) this._open();
    }, delay);
  }

  _startWatchdog(intervalSeconds) {
    clearInterval(this._watchdog);
    const limit = 2 * intervalSeconds * 1000;
    this._watchdog = setInterval(
      () => {
        if (Date.now() - this._lastFrameAt > limit && this._ws !== null) {
          const ws = this._ws;
          this._teardown();
          ws.close(CloseCode.HEARTBEAT_TIMEOUT, "no heartbeat");
          this._onClose(CloseCode.HEARTBEAT_TIMEOUT, "no heartbeat");
        }
      },
      Math.max(250, limit / 4),
    );
  }

  _teardown() {
    clearInterval(this._watchdog);
    this._watchdog = null;
    if (this._ws !== null) {
      this._ws.onmessage = null;
      this._ws.onclose = null;
      this._ws = null;
    }
  }

  _send(message) {
    const ws = this._ws;
    if (ws === null || ws.readyState !== 1 || this.state !== "open") return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("state", { state, code: null, reason: "", retryIn: null, ...extra });
  }

  _emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }
}

/** A REST call the bridge refused: `status`, and the §6.1 `code`, `message`, `field`. */
export class TidingsHttpError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.name = "TidingsHttpError";
    this.status = status;
    this.code = error.code || null;
    this.field = error.field || null;
  }
}

/**
 * The user's inbox over REST (docs/PROTOCOL.md §6), with the credentials of a
 * TidingsClient's options: `{token}`, `{getToken}` (asked before every call) or
 * `{userId}` (insecure mode). Every method resolves with the parsed answer or rejects
 * with a TidingsHttpError.
 *
 *   const rest = new TidingsRest({ userId: 42 });
 *   const { unseen } = await rest.counts();
 *   await rest.markSeen();
 */
export class TidingsRest {
  constructor({ baseUrl = "", token = null, getToken = null, userId = null, fetch = null } = {}) {
    this.baseUrl = baseUrl;
    this.options = { token, getToken, userId };
    this._fetch = fetch || ((...args) => globalThis.fetch(...args));
  }

  /** One page, newest first. Filters: types, priorities (arrays), read, seen, archived,
   * unreadOnly (booleans), createdAfter, createdBefore (Date or ISO string), limit,
   * beforeId. Answers {notifications, has_more}. */
  list(filters = {}) {
    const query = new URLSearchParams();
    const { types, priorities, read, seen, archived, unreadOnly, createdAfter, createdBefore, limit, beforeId } = filters;
    if (types && types.length) query.set("type", types.join(","));
    if (priorities && priorities.length) query.set("priority", priorities.join(","));
    if (read !== undefined && read !== null) query.set("read", String(read));
    if (seen !== undefined && seen !== null) query.set("seen", String(seen));
    if (archived) query.set("archived", "true");
    if (unreadOnly) query.set("unread_only", "true");
    if (createdAfter) query.set("created_after", iso(createdAfter));
    if (createdBefore) query.set("created_before", iso(createdBefore));
    if (limit) query.set("limit", String(limit));
    if (beforeId) query.set("before_id", String(beforeId));
    const text = query.toString();
    return this._call("GET", `/api/v1/notifications${text ? `?${text}` : ""}`);
  }

  /** {unread, unseen, by_type: {type: {unread, unseen}}} */
  counts() {
    return this._call("GET", "/api/v1/notifications/counts");
  }

  /** {unread} */
  unreadCount() {
    return this._call("GET", "/api/v1/notifications/unread_count");
  }

  markRead(notificationId) {
    return this._call("POST", `/api/v1/notifications/${notificationId}/read`);
  }

  /** {up_to_id, seen}: up to `upToId`, or the newest. */
  markSeen(upToId = 0) {
    return this._call("POST", "/api/v1/notifications/seen", upToId ? { up_to_id: upToId } : {});
  }

  /** {up_to_id, read} */
  markAllRead({ notificationType = null, upToId = 0 } = {}) {
    const body = {};
    if (notificationType) body.notification_type = notificationType;
    if (upToId) body.up_to_id = upToId;
    return this._call("POST", "/api/v1/notifications/read_all", body);
  }

  archive(notificationId) {
    return this._call("POST", `/api/v1/notifications/${notificationId}/archive`);
  }

  unarchive(notificationId) {
    return this._call("POST", `/api/v1/notifications/${notificationId}/unarchive`);
  }

  /** Resolves with null (204). */
  delete(notificationId) {
    return this._call("DELETE", `/api/v1/notifications/${notificationId}`);
  }

  /** {muted_types} */
  preferences() {
    return this._call("GET", "/api/v1/preferences");
  }

  /** {muted_types}: replaces the stored set. */
  updatePreferences(mutedTypes) {
    return this._call("PUT", "/api/v1/preferences", { muted_types: [...mutedTypes] });
  }

  async _headers() {
    const { token, getToken, userId } = this.options;
    const bearer = getToken ? await getToken() : token;
    if (bearer) return { Authorization: `Bearer ${bearer}` };
    if (userId !== null && userId !== undefined) return { "X-Tidings-User": String(userId) };
    return {};
  }

  async _call(method, path, body = undefined) {
    const headers = await this._headers();
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await this._fetch(`${this.baseUrl}${path}`, init);
    if (response.status === 204) return null;
    const answer = await response.json().catch(() => null);
    if (!response.ok) throw new TidingsHttpError(response.status, answer);
    return answer;
  }
}

function iso(moment) {
  return moment instanceof Date ? moment.toISOString() : String(moment);
}
