/**
 * The Inbox: one user's stored notifications, through the unary calls of NotificationStream.
 *
 * A Subscriber receives; an Inbox looks back and acts: list with filters, counts for the
 * badge, mark seen, mark (all) read, archive, delete, and the preferences (muted types).
 * Every change reaches every live session of the user as an inbox event.
 *
 * Each call has a deadline (`timeoutMs`, covering all its attempts) and UNAVAILABLE is
 * retried with backoff, at most `retries` times, except for `delete`: a retried delete
 * whose first attempt went through would reject with NOT_FOUND and hide that it worked.
 */

import { createClient, type Client } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { NotificationStream } from "../gen/tidings/v1/stream_pb.js";
import { Backoff, type BackoffPolicy } from "./backoff.js";
import { callWithRetries } from "./calls.js";
import { DEFAULT_TARGET, identityHeaders, openTransport, type OwnedTransport, type TokenSource } from "./channel.js";
import { ClosedError } from "./errors.js";
import {
  countsFromPb,
  notificationFromPb,
  priorityToPb,
  type Counts,
  type MarkResult,
  type Notification,
  type Page,
  type Priority,
} from "./models.js";

export interface InboxOptions {
  target?: string;
  token?: TokenSource;
  /** The caller, against a server in insecure development mode only. */
  user?: string;
  timeoutMs?: number;
  retries?: number;
  backoff?: BackoffPolicy;
}

/** The filters of `Inbox.list`; they combine. */
export interface ListOptions {
  /** Only these types (empty: all). */
  types?: readonly string[];
  /** Only read (true) or only unread (false) ones. */
  read?: boolean;
  /** Only seen (true) or only unseen (false) ones. */
  seen?: boolean;
  /** Only the archived ones; by default only the others. */
  archived?: boolean;
  priorities?: readonly Priority[];
  /** Strictly after / before these instants. */
  createdAfter?: Date;
  createdBefore?: Date;
  unreadOnly?: boolean;
  /** 1–200; default 50. */
  limit?: number;
  /** The next page: `page.nextBeforeId`. Stable while new notifications arrive. */
  beforeId?: bigint | number;
  timeoutMs?: number;
}

/**
 * The caller's own inbox.
 *
 * ```ts
 * const inbox = new Inbox({ target: "127.0.0.1:50051", token });
 * const { unseen } = await inbox.counts();       // the badge
 * await inbox.markSeen();                         // the bell was opened
 * await inbox.archive(id);
 * await inbox.updatePreferences(["digest"]);     // mute a type
 * inbox.close();
 * ```
 * An id that is not the caller's rejects with RpcError code NotFound; a bad argument
 * with InvalidArgument (its `field` names it) and changes nothing.
 */
export class Inbox {
  private readonly owned: OwnedTransport;
  private readonly client: Client<typeof NotificationStream>;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoff: BackoffPolicy;
  private closed = false;

  constructor(private readonly options: InboxOptions = {}) {
    this.owned = openTransport(options.target ?? DEFAULT_TARGET);
    this.client = createClient(NotificationStream, this.owned.transport);
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.retries = options.retries ?? 3;
    this.backoff = options.backoff ?? new Backoff({ baseMs: 100, capMs: 2000 });
  }

  /** One page of the caller's notifications, newest first. Muted types are listed;
   * expired ones are not. */
  async list(options: ListOptions = {}): Promise<Page> {
    const request = {
      unreadOnly: options.unreadOnly ?? false,
      limit: options.limit ?? 0,
      beforeId: BigInt(options.beforeId ?? 0),
      types: [...(options.types ?? [])],
      read: options.read,
      seen: options.seen,
      archived: options.archived ?? false,
      priorities: (options.priorities ?? []).map(priorityToPb),
      createdAfter: options.createdAfter === undefined ? undefined : timestampFromDate(options.createdAfter),
      createdBefore: options.createdBefore === undefined ? undefined : timestampFromDate(options.createdBefore),
    };
    const response = await this.call((timeoutMs) => this.client.listNotifications(request, this.opts(timeoutMs)), options.timeoutMs);
    const notifications = response.notifications.map(notificationFromPb);
    const last = notifications.at(-1);
    return {
      notifications,
      hasMore: response.hasMore,
      nextBeforeId: response.hasMore && last !== undefined ? last.id : undefined,
    };
  }

  /** Unread and unseen, in total (muted types left out) and per type. */
  async counts(timeoutMs?: number): Promise<Counts> {
    return countsFromPb(await this.call((t) => this.client.getCounts({}, this.opts(t)), timeoutMs));
  }

  /** How many are unread (the same as `counts().unread`). */
  async unreadCount(timeoutMs?: number): Promise<bigint> {
    return (await this.call((t) => this.client.getUnreadCount({}, this.opts(t)), timeoutMs)).unread;
  }

  /** The caller's muted types, sorted. */
  async preferences(timeoutMs?: number): Promise<{ mutedTypes: string[] }> {
    const response = await this.call((t) => this.client.getPreferences({}, this.opts(t)), timeoutMs);
    return { mutedTypes: [...response.mutedTypes] };
  }

  /** Mark one notification read; resolves with it as stored now. */
  async markRead(id: bigint | number, timeoutMs?: number): Promise<Notification> {
    const response = await this.call((t) => this.client.markRead({ notificationId: BigInt(id) }, this.opts(t)), timeoutMs);
    return this.notification(response.notification);
  }

  /** Mark every notification up to `upToId` (default: the newest) seen: the badge clears. */
  async markSeen(upToId?: bigint | number, timeoutMs?: number): Promise<MarkResult> {
    const response = await this.call((t) => this.client.markSeen({ upToId: BigInt(upToId ?? 0) }, this.opts(t)), timeoutMs);
    return { upToId: response.upToId, changed: response.seen };
  }

  /** Mark every unread notification read (archived ones too), of `notificationType` only
   * and up to `upToId` when given. Every live session hears one `allMarkedRead`. */
  async markAllRead(options: { notificationType?: string; upToId?: bigint | number; timeoutMs?: number } = {}): Promise<MarkResult> {
    const request = { notificationType: options.notificationType ?? "", upToId: BigInt(options.upToId ?? 0) };
    const response = await this.call((t) => this.client.markAllRead(request, this.opts(t)), options.timeoutMs);
    return { upToId: response.upToId, changed: response.read };
  }

  /** Move one notification out of the default list and the counts (again: no-op). */
  async archive(id: bigint | number, timeoutMs?: number): Promise<Notification> {
    const response = await this.call(
      (t) => this.client.archiveNotification({ notificationId: BigInt(id) }, this.opts(t)),
      timeoutMs,
    );
    return this.notification(response.notification);
  }

  /** Bring an archived notification back. */
  async unarchive(id: bigint | number, timeoutMs?: number): Promise<Notification> {
    const response = await this.call(
      (t) => this.client.unarchiveNotification({ notificationId: BigInt(id) }, this.opts(t)),
      timeoutMs,
    );
    return this.notification(response.notification);
  }

  /** Delete one notification for good. Not retried (see the module doc). */
  async delete(id: bigint | number, timeoutMs?: number): Promise<void> {
    await this.call((t) => this.client.deleteNotification({ notificationId: BigInt(id) }, this.opts(t)), timeoutMs, false);
  }

  /** Replace the caller's muted types (at most 256, each 1–64 characters); resolves with
   * them as stored (sorted, unique). */
  async updatePreferences(mutedTypes: readonly string[], timeoutMs?: number): Promise<{ mutedTypes: string[] }> {
    const response = await this.call(
      (t) => this.client.updatePreferences({ mutedTypes: [...mutedTypes] }, this.opts(t)),
      timeoutMs,
    );
    return { mutedTypes: [...response.mutedTypes] };
  }

  close(): void {
    this.closed = true;
    this.owned.close();
  }

  private notification(n: Parameters<typeof notificationFromPb>[0] | undefined): Notification {
    if (n === undefined) throw new Error("the server sent no notification");
    return notificationFromPb(n);
  }

  private opts(timeoutMs: number): { timeoutMs: number; headers: Record<string, string> } {
    return { timeoutMs, headers: identityHeaders({ token: this.options.token, user: this.options.user }) };
  }

  private async call<T>(attempt: (timeoutMs: number) => Promise<T>, timeoutMs: number | undefined, retry = true): Promise<T> {
    if (this.closed) throw new ClosedError("this Inbox is closed");
    return callWithRetries(attempt, { timeoutMs: timeoutMs ?? this.timeoutMs, retries: this.retries, backoff: this.backoff, retry });
  }
}
