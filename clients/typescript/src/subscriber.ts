/**
 * The Subscriber: one user's notifications as an async iterable that survives reconnects.
 *
 * Same rules as the Python SDK (docs/CLIENTS.md): backoff with full jitter and a cap;
 * resume with `since` = the last id the application processed (a notification
 * counts as processed when the application asks for the next one); ids already seen are
 * dropped; silence for 2 × heartbeat_interval drops the connection; after ABORTED wait at
 * least `afterAbortMs`; UNAUTHENTICATED / PERMISSION_DENIED end the iteration with AuthError.
 *
 * Commands on the live stream are answered in order, so unanswered ones wait in a FIFO
 * matched against the answers, and the FIFO is sent again after a reconnect. Every
 * command may be sent twice without harm, except that a `delete` the server carried out
 * before the connection broke is answered `not_found` the second time: taken as done.
 * The inbox events of the user's other sessions arrive on the same stream; they answer
 * no command unless they match its head exactly (same id, same type), and every one of
 * them reaches `onEvent` as a typed InboxEvent.
 *
 * With `getToken`, the session's token is refreshed in-band when the server warns that it
 * expires (`token_expiring`, docs/PROTOCOL.md §2.7), and a session that ran out anyway
 * (UNAUTHENTICATED `token_expired`) reconnects with a fresh token.
 */

import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, encodeBinaryHeader } from "@connectrpc/connect";
import {
  ConnectParamsSchema,
  ConnectRequestSchema,
  FilterMode,
  NotificationStream,
  TypeFilterSchema,
  type ConnectRequest,
  type ConnectResponse,
} from "../gen/tidings/v1/stream_pb.js";
import { Backoff, type BackoffPolicy } from "./backoff.js";
import { identityHeaders, openTransport, targets, type Target, type TokenSource } from "./channel.js";
import { AuthError, ClosedError, CommandError, ReconnectGaveUp, rpcError, type TidingsError } from "./errors.js";
import {
  EVERYTHING,
  admits,
  connectionInfoFromPb,
  countsFromPb,
  inboxEventFromPb,
  notificationFromPb,
  subscribe,
  subscriptionFromPb,
  unsubscribe,
  type ConnectionInfo,
  type Counts,
  type InboxEvent,
  type InboxListener,
  type Notification,
  type Subscription,
} from "./models.js";
import { Inbox, Pushable } from "./queues.js";
import type { DisconnectReason, StateEvent, StateListener } from "./states.js";

/** A connection is dead after this many heartbeat intervals without any message. */
export const DEAD_AFTER_HEARTBEATS = 2;
/** How the Subscriber names itself in `ConnectParams`. */
export const CLIENT_NAME = "tidings-typescript";
export const CLIENT_VERSION = "0.1.0";
/** gRPC metadata: a serialized `tidings.v1.ConnectParams` (docs/PROTOCOL.md §7.2). */
const CONNECT_PARAMS_KEY = "tidings-connect-params-bin";
const SEEN_CAPACITY = 10_000;

export interface SubscriberOptions {
  target: Target;
  token?: TokenSource;
  /** A fresh JWT: asked before each connection (when `token` is not given) and whenever
   * the server warns that the session's token is about to expire. */
  getToken?: () => string | Promise<string>;
  user?: string;
  /** Resume after this id (one the application stored from `lastProcessedId`). */
  since?: bigint | number;
  /** The initial filter: only these types. */
  types?: readonly string[];
  backoff?: BackoffPolicy;
  onState?: StateListener;
  onMarkedRead?: (id: bigint) => void;
  /** Every inbox event of the user (marks, archive, delete, preferences), from any
   * session or call, in wire order. */
  onEvent?: InboxListener;
  connectTimeoutMs?: number;
  commandTimeoutMs?: number;
  bufferSize?: number;
}

type CommandKind =
  | "markRead"
  | "subscribe"
  | "unsubscribe"
  | "refresh"
  | "markSeen"
  | "markAllRead"
  | "archive"
  | "unarchive"
  | "delete"
  | "getCounts"
  | "updatePreferences";

interface Command {
  kind: CommandKind;
  request: ConnectRequest;
  notificationId?: bigint;
  /** markSeen / markAllRead: the up-to id asked for (0n: the newest). */
  upToId?: bigint;
  /** markAllRead: the type asked for; updatePreferences: the muted types, sorted. */
  expect?: string | undefined;
  /** How many connections it was written on. */
  writes: number;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

interface Ended {
  reason: DisconnectReason;
  detail: string;
  fatal?: TidingsError;
}

/**
 * A live, resuming stream of one user's notifications.
 *
 * ```ts
 * const sub = new Subscriber({ target: "127.0.0.1:50051", token });
 * for await (const n of sub) {
 *   console.log(n.title, n.data);
 *   await sub.markRead(n.id);
 * }
 * ```
 * Leaving the loop does not close the Subscriber: call `close()`.
 */
export class Subscriber implements AsyncIterable<Notification>, AsyncIterator<Notification> {
  private readonly nextTarget: () => string;
  private readonly backoff: BackoffPolicy;
  private readonly connectTimeoutMs: number;
  private readonly commandTimeoutMs: number;
  private readonly bufferSize: number;
  private filter: Subscription;
  private readonly inbox = new Inbox();
  private readonly seen = new Set<bigint>();
  private handed: Notification | undefined;
  private lastProcessed: bigint | undefined;
  private firstReceived: bigint | undefined;
  private readonly initialSince: bigint | undefined;
  private readonly pending: Command[] = [];
  private requests: Pushable<ConnectRequest> | undefined;
  private info: ConnectionInfo | undefined;
  private greeted = false;
  private failure: unknown;
  private closed = false;
  private running: Promise<void> | undefined;
  private stopCurrent: (() => void) | undefined;
  private wakeSleep: (() => void) | undefined;
  private connectedWaiters: { resolve(info: ConnectionInfo): void; reject(e: unknown): void }[] = [];
  private refreshing = false;

  constructor(private readonly options: SubscriberOptions) {
    this.nextTarget = targets(options.target);
    this.backoff = options.backoff ?? new Backoff();
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.commandTimeoutMs = options.commandTimeoutMs ?? 10_000;
    this.bufferSize = Math.max(2, options.bufferSize ?? 1000);
    this.filter = options.types?.length ? subscribe(EVERYTHING, options.types) : EVERYTHING;
    this.initialSince = options.since === undefined ? undefined : BigInt(options.since);
  }

  // --- lifecycle --------------------------------------------------------------------

  /** Begin connecting in the background (iteration does this too). */
  start(): void {
    if (this.closed) throw new ClosedError("this Subscriber is closed");
    this.running ??= this.run();
  }

  /** End the stream: iteration stops, unanswered commands reject with ClosedError. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.inbox.finish(undefined, true);
    this.stopCurrent?.();
    this.wakeSleep?.();
    await this.running;
    this.failPending(new ClosedError("the Subscriber was closed"));
    this.rejectConnectedWaiters(new ClosedError("the Subscriber was closed"));
  }

  // --- what the application sees ----------------------------------------------------

  [Symbol.asyncIterator](): this {
    this.start();
    return this;
  }

  /** The next notification; asking for it marks the previous one processed. */
  async next(): Promise<IteratorResult<Notification>> {
    if (this.handed !== undefined) {
      this.lastProcessed = this.handed.id;
      this.handed = undefined;
    }
    this.start();
    const n = await this.inbox.get();
    if (n === undefined) return { done: true, value: undefined };
    this.handed = n;
    return { done: false, value: n };
  }

  /** The id a restart should pass as `since` to resume where the application was. */
  get lastProcessedId(): bigint | undefined {
    return this.lastProcessed;
  }

  get subscription(): Subscription {
    return this.filter;
  }

  /** Resolves with the greeting of a live session (rejects if the Subscriber gave up). */
  waitConnected(): Promise<ConnectionInfo> {
    this.start();
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.requests !== undefined && this.info !== undefined) return Promise.resolve(this.info);
    return new Promise((resolve, reject) => this.connectedWaiters.push({ resolve, reject }));
  }

  // --- commands on the live stream --------------------------------------------------

  /** Mark one of the user's notifications read; resolves when the server confirmed. */
  async markRead(id: bigint | number, timeoutMs?: number): Promise<void> {
    const notificationId = BigInt(id);
    const request = create(ConnectRequestSchema, { kind: { case: "markRead", value: { notificationId } } });
    await this.command("markRead", request, timeoutMs, { notificationId });
  }

  /** Receive (also) these types; resolves with the filter the server now applies. */
  async subscribe(types: readonly string[], timeoutMs?: number): Promise<Subscription> {
    this.filter = subscribe(this.filter, types);
    const request = create(ConnectRequestSchema, {
      kind: { case: "subscribe", value: { notificationTypes: [...types] } },
    });
    return (await this.command("subscribe", request, timeoutMs)) as Subscription;
  }

  /** Stop receiving these types; resolves with the filter the server now applies. */
  async unsubscribe(types: readonly string[], timeoutMs?: number): Promise<Subscription> {
    this.filter = unsubscribe(this.filter, types);
    const request = create(ConnectRequestSchema, {
      kind: { case: "unsubscribe", value: { notificationTypes: [...types] } },
    });
    return (await this.command("unsubscribe", request, timeoutMs)) as Subscription;
  }

  /** Mark the user's notifications seen up to `upToId` (default: the newest); resolves
   * with the id the mark went up to. Every session of the user hears `seen`. */
  async markSeen(upToId?: bigint | number, timeoutMs?: number): Promise<bigint> {
    const id = BigInt(upToId ?? 0);
    const request = create(ConnectRequestSchema, { kind: { case: "markSeen", value: { upToId: id } } });
    return (await this.command("markSeen", request, timeoutMs, { upToId: id })) as bigint;
  }

  /** Mark the user's unread notifications read (of `notificationType` only, up to `upToId`
   * when given); resolves with the id the mark went up to. Every session hears one
   * `allMarkedRead`. */
  async markAllRead(options: { notificationType?: string; upToId?: bigint | number; timeoutMs?: number } = {}): Promise<bigint> {
    const upToId = BigInt(options.upToId ?? 0);
    const notificationType = options.notificationType ?? "";
    const request = create(ConnectRequestSchema, { kind: { case: "markAllRead", value: { notificationType, upToId } } });
    const result = await this.command("markAllRead", request, options.timeoutMs, { upToId, expect: notificationType || undefined });
    return result as bigint;
  }

  /** Archive one notification; rejects with CommandError `not_found` for an id not the user's. */
  async archive(id: bigint | number, timeoutMs?: number): Promise<void> {
    const notificationId = BigInt(id);
    const request = create(ConnectRequestSchema, { kind: { case: "archive", value: { notificationId } } });
    await this.command("archive", request, timeoutMs, { notificationId });
  }

  /** Bring an archived notification back. */
  async unarchive(id: bigint | number, timeoutMs?: number): Promise<void> {
    const notificationId = BigInt(id);
    const request = create(ConnectRequestSchema, { kind: { case: "unarchive", value: { notificationId } } });
    await this.command("unarchive", request, timeoutMs, { notificationId });
  }

  /** Delete one notification for good; rejects with CommandError `not_found` for an id
   * not the user's (or already deleted). */
  async delete(id: bigint | number, timeoutMs?: number): Promise<void> {
    const notificationId = BigInt(id);
    const request = create(ConnectRequestSchema, { kind: { case: "delete", value: { notificationId } } });
    await this.command("delete", request, timeoutMs, { notificationId });
  }

  /** The user's unread and unseen counts, in total and per type (as `Inbox.counts`). */
  async getCounts(timeoutMs?: number): Promise<Counts> {
    const request = create(ConnectRequestSchema, { kind: { case: "getCounts", value: {} } });
    return (await this.command("getCounts", request, timeoutMs)) as Counts;
  }

  /** Replace the user's muted types; resolves with them as stored (sorted). Rejects with
   * CommandError `invalid_message` for a bad list (nothing changes). */
  async updatePreferences(mutedTypes: readonly string[], timeoutMs?: number): Promise<string[]> {
    const request = create(ConnectRequestSchema, {
      kind: { case: "updatePreferences", value: { mutedTypes: [...mutedTypes] } },
    });
    const expect = JSON.stringify([...new Set(mutedTypes)].sort());
    return (await this.command("updatePreferences", request, timeoutMs, { expect })) as string[];
  }

  /** Send the live session a fresh token (`token`, or `getToken`'s); resolves once the
   * server accepted it, rejects with CommandError `unauthorized` if it refused it. */
  async refresh(token?: string, timeoutMs?: number): Promise<void> {
    const fresh = token ?? (await this.options.getToken?.());
    if (!fresh) throw new TypeError("no token given and no getToken");
    const request = create(ConnectRequestSchema, { kind: { case: "refresh", value: { token: fresh } } });
    await this.command("refresh", request, timeoutMs);
  }

  /** The server warned that the token expires: refresh it, one at a time. */
  private refreshSoon(): void {
    if (this.options.getToken === undefined || this.refreshing) return;
    this.refreshing = true;
    this.refresh()
      .catch((err: unknown) => console.warn("tidings: token refresh failed", err))
      .finally(() => {
        this.refreshing = false;
      });
  }

  private command(
    kind: CommandKind,
    request: ConnectRequest,
    timeoutMs: number | undefined,
    match: Pick<Command, "notificationId" | "upToId" | "expect"> = {},
  ): Promise<unknown> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new ClosedError("this Subscriber is closed"));
    this.start();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new CommandError("timeout", `no answer within ${timeoutMs ?? this.commandTimeoutMs} ms`)),
        timeoutMs ?? this.commandTimeoutMs,
      );
      const settle =
        <T>(f: (v: T) => void) =>
        (v: T) => {
          clearTimeout(timer);
          f(v);
        };
      const command: Command = { kind, request, writes: 0, resolve: settle(resolve), reject: settle(reject), ...match };
      this.pending.push(command);
      if (this.requests !== undefined) {
        this.requests.push(request);
        command.writes += 1;
      }
    });
  }

  /** An answer-shaped message arrived: settle the head command if it is its answer. */
  private answer(kind: "error" | "event" | "subscription" | "refreshed" | "counts", value: unknown): void {
    const head = this.pending[0];
    if (head === undefined) return;
    if (kind === "error") {
      this.pending.shift();
      const [code, message] = value as [string, string];
      // A delete written on an earlier connection too: the first one went through.
      if (head.kind === "delete" && head.writes > 1 && code === "not_found") head.resolve(undefined);
      else head.reject(new CommandError(code, message));
      return;
    }
    const answered =
      (kind === "refreshed" && head.kind === "refresh") ||
      (kind === "subscription" && (head.kind === "subscribe" || head.kind === "unsubscribe")) ||
      (kind === "counts" && head.kind === "getCounts") ||
      (kind === "event" && answers(head, value as InboxEvent));
    if (!answered) return;
    this.pending.shift();
    head.resolve(kind === "event" ? resultOf(value as InboxEvent) : value);
  }

  private failPending(error: unknown): void {
    for (const command of this.pending.splice(0)) command.reject(error);
  }

  // --- the connection loop ----------------------------------------------------------

  private async run(): Promise<void> {
    try {
      await this.loop();
    } catch (err) {
      // A bug: surface it to the application rather than hang it.
      this.finish({ reason: "error", detail: String(err) }, err);
    }
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      this.greeted = false;
      let ended: Ended;
      try {
        const address = this.nextTarget();
        this.emit({ kind: "connecting", target: address, attempt: failures });
        ended = await this.connection(address);
      } catch (err) {
        ended = { reason: "connect_failed", detail: String(err) };
      }
      if (this.closed) break;
      if (this.greeted) failures = 0;
      if (ended.fatal !== undefined) return this.finish(ended, ended.fatal);
      if (ended.reason === "buffer_full") {
        this.emit({ kind: "disconnected", reason: ended.reason, detail: ended.detail, willReconnect: true });
        await this.inbox.waitAtMost(Math.floor(this.bufferSize / 2));
        continue;
      }
      const limit = this.backoff.maxAttempts;
      if (limit !== undefined && failures >= limit) {
        return this.finish(ended, new ReconnectGaveUp(failures, ended.detail || ended.reason));
      }
      this.emit({ kind: "disconnected", reason: ended.reason, detail: ended.detail, willReconnect: true });
      const delayMs =
        ended.reason === "aborted" ? this.backoff.delayAfterAbortMs(failures) : this.backoff.delayMs(failures);
      this.emit({ kind: "reconnecting", delayMs, attempt: failures });
      failures += 1;
      await this.sleep(delayMs);
    }
    this.emit({ kind: "disconnected", reason: "closed", detail: "", willReconnect: false });
  }

  private finish(ended: Ended, error: unknown): void {
    this.failure = error;
    this.emit({ kind: "disconnected", reason: ended.reason, detail: ended.detail, willReconnect: false });
    this.inbox.finish(error);
    this.failPending(error);
    this.rejectConnectedWaiters(error);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeSleep = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Runs one connection until it ends; resolves with how it ended. */
  private async connection(address: string): Promise<Ended> {
    const { transport, close } = openTransport(address);
    const client = createClient(NotificationStream, transport);
    const abort = new AbortController();
    const requests = new Pushable<ConnectRequest>();
    let ours: Ended | undefined; // set when we end the connection ourselves
    let timer: NodeJS.Timeout | undefined;
    const stop = (ended: Ended) => {
      ours ??= ended;
      abort.abort();
    };
    const arm = (ms: number, reason: DisconnectReason) => {
      clearTimeout(timer);
      timer = setTimeout(() => stop({ reason, detail: `no message for ${ms} ms` }), ms);
    };
    this.stopCurrent = () => stop({ reason: "closed", detail: "" });
    let silenceMs: number | undefined;
    try {
      arm(this.connectTimeoutMs, "connect_timeout");
      let fresh: string | undefined;
      if (this.options.token === undefined && this.options.getToken !== undefined) {
        try {
          fresh = await this.options.getToken();
        } catch (err) {
          return { reason: "connect_failed", detail: `getToken failed: ${String(err)}` };
        }
      }
      const responses = client.connect(requests, { headers: this.metadata(fresh), signal: abort.signal });
      for await (const message of responses) {
        if (!this.greeted) {
          if (message.kind.case !== "connectionEstablished") {
            return { reason: "error", detail: "the server did not greet the session" };
          }
          this.greeted = true;
          this.info = connectionInfoFromPb(message.kind.value);
          // This connection carries a fresh token already: pending refreshes are moot.
          for (const command of this.pending.filter((c) => c.kind === "refresh")) command.resolve(undefined);
          this.pending.splice(0, this.pending.length, ...this.pending.filter((c) => c.kind !== "refresh"));
          for (const command of this.pending) {
            requests.push(command.request);
            command.writes += 1;
          }
          this.requests = requests;
          const interval = this.info.heartbeatInterval;
          silenceMs = interval > 0 ? DEAD_AFTER_HEARTBEATS * interval * 1000 : undefined;
          this.emit({ kind: "connected", target: address, info: this.info });
          for (const waiter of this.connectedWaiters.splice(0)) waiter.resolve(this.info);
        } else {
          const full = this.dispatch(message);
          if (full) {
            stop(full);
            break;
          }
        }
        if (silenceMs !== undefined) arm(silenceMs, "heartbeat_timeout");
        else clearTimeout(timer);
      }
      return ours ?? { reason: "stream_ended", detail: "the server ended the stream" };
    } catch (err) {
      return ours ?? this.endedBy(err);
    } finally {
      clearTimeout(timer);
      this.stopCurrent = undefined;
      this.requests = undefined;
      requests.end();
      abort.abort();
      close();
    }
  }

  private metadata(token?: string): Record<string, string> {
    const headers = identityHeaders({ token: token ?? this.options.token, user: this.options.user });
    const { types, excluded } = this.filter;
    const params = create(ConnectParamsSchema, {
      since: this.resumeSince(),
      clientName: CLIENT_NAME,
      clientVersion: CLIENT_VERSION,
    });
    if (types !== undefined) {
      // "only these", or none at all
      params.filter = create(TypeFilterSchema, { mode: FilterMode.ONLY, notificationTypes: [...types].sort() });
    } else if (excluded.size) {
      params.filter = create(TypeFilterSchema, { mode: FilterMode.ALL_EXCEPT, excludedTypes: [...excluded].sort() });
    }
    headers[CONNECT_PARAMS_KEY] = encodeBinaryHeader(toBinary(ConnectParamsSchema, params));
    return headers;
  }

  private resumeSince(): bigint | undefined {
    if (this.lastProcessed !== undefined) return this.lastProcessed;
    if (this.initialSince !== undefined) return this.initialSince;
    // Nothing processed yet: ask again from the first one received, so that what was in
    // flight when the connection broke is not lost.
    if (this.firstReceived !== undefined) return this.firstReceived - 1n;
    return undefined;
  }

  private endedBy(err: unknown): Ended {
    const ce = ConnectError.from(err);
    const detail = ce.rawMessage;
    if (
      ce.code === Code.Unauthenticated &&
      this.options.getToken !== undefined &&
      ce.metadata.get("tidings-error-code") === "token_expired"
    ) {
      return { reason: "token_expired", detail }; // missed the refresh: reconnect, fresh token
    }
    switch (ce.code) {
      case Code.Unauthenticated:
      case Code.PermissionDenied:
        return { reason: "auth_failed", detail, fatal: rpcError(ce) as AuthError };
      case Code.InvalidArgument:
      case Code.Unimplemented:
        return { reason: "error", detail, fatal: rpcError(ce) };
      case Code.Aborted:
        return { reason: "aborted", detail };
      case Code.ResourceExhausted:
        return { reason: "slow", detail };
      case Code.Unavailable:
        return { reason: this.greeted ? "unavailable" : "connect_failed", detail };
      default:
        return { reason: this.greeted ? "error" : "connect_failed", detail };
    }
  }

  /** Handles one message; returns an Ended when the application has fallen too far behind. */
  private dispatch(message: ConnectResponse): Ended | undefined {
    const kind = message.kind;
    switch (kind.case) {
      case "notification": {
        if (kind.value.notification === undefined) return undefined;
        const n = notificationFromPb(kind.value.notification);
        if (this.seen.has(n.id) || !admits(this.filter, n.type)) return undefined;
        this.remember(n.id);
        this.firstReceived ??= n.id;
        this.inbox.put(n);
        if (this.inbox.length >= this.bufferSize) {
          return { reason: "buffer_full", detail: `${this.inbox.length} notifications wait for the application` };
        }
        return undefined;
      }
      case "notificationMarkedRead":
      case "notificationsSeen":
      case "notificationsMarkedRead":
      case "notificationArchived":
      case "notificationUnarchived":
      case "notificationDeleted":
      case "preferencesUpdated": {
        const event = inboxEventFromPb(message)!;
        this.answer("event", event);
        if (event.kind === "markedRead") this.callBack(this.options.onMarkedRead, event.notificationId);
        this.callBack(this.options.onEvent, event);
        return undefined;
      }
      case "counts":
        this.answer("counts", countsFromPb(kind.value));
        return undefined;
      case "subscriptionUpdated":
        this.answer("subscription", subscriptionFromPb(kind.value));
        return undefined;
      case "error":
        this.answer("error", [kind.value.code, kind.value.message]);
        return undefined;
      case "tokenExpiring":
        this.refreshSoon();
        return undefined;
      case "tokenRefreshed":
        this.answer("refreshed", undefined);
        return undefined;
      default:
        return undefined; // heartbeat, pong: the silence timer has been re-armed
    }
  }

  private remember(id: bigint): void {
    this.seen.add(id);
    if (this.seen.size > SEEN_CAPACITY) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  private rejectConnectedWaiters(error: unknown): void {
    for (const waiter of this.connectedWaiters.splice(0)) waiter.reject(error);
  }

  private callBack<T>(callback: ((value: T) => void) | undefined, value: T): void {
    try {
      callback?.(value);
    } catch (err) {
      console.error("a Subscriber callback threw", err);
    }
  }

  private emit(event: StateEvent): void {
    try {
      this.options.onState?.(event);
    } catch (err) {
      console.error("a Subscriber onState callback threw", err);
    }
  }
}

/** Whether the inbox event answers the command: events name what they did, so another
 * session's echo is told apart by its ids; a mark "up to the newest" takes any mark of
 * its kind. */
function answers(head: Command, event: InboxEvent): boolean {
  switch (event.kind) {
    case "markedRead":
      return head.kind === "markRead" && head.notificationId === event.notificationId;
    case "archived":
      return head.kind === "archive" && head.notificationId === event.notificationId;
    case "unarchived":
      return head.kind === "unarchive" && head.notificationId === event.notificationId;
    case "deleted":
      return head.kind === "delete" && head.notificationId === event.notificationId;
    case "seen":
      return head.kind === "markSeen" && (head.upToId === 0n || head.upToId === event.upToId);
    case "allMarkedRead":
      return (
        head.kind === "markAllRead" &&
        head.expect === event.notificationType &&
        (head.upToId === 0n || head.upToId === event.upToId)
      );
    case "preferencesUpdated":
      return head.kind === "updatePreferences" && head.expect === JSON.stringify(event.mutedTypes);
  }
}

/** What a command's call resolves with, from its answer. */
function resultOf(event: InboxEvent): unknown {
  switch (event.kind) {
    case "seen":
    case "allMarkedRead":
      return event.upToId;
    case "preferencesUpdated":
      return event.mutedTypes;
    default:
      return undefined;
  }
}
