/**
 * The Publisher: NotificationAdminService calls with deadlines and safe retries.
 *
 * Each call has a deadline (`timeoutMs`, covering all its attempts). UNAVAILABLE is
 * retried with backoff, at most `retries` times, where a retry is safe: `create` sends
 * one idempotency key (a fresh UUID per call) on every attempt, so a retry after a lost
 * answer returns the first notification instead of making a second (docs/PROTOCOL.md §3).
 * `broadcast` has no idempotency key in the protocol and is never retried.
 */

import { randomUUID } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { NotificationAdminService } from "../gen/tidings/v1/admin_pb.js";
import { Backoff, type BackoffPolicy } from "./backoff.js";
import { DEFAULT_TARGET, identityHeaders, openTransport, type OwnedTransport, type TokenSource } from "./channel.js";
import { callWithRetries } from "./calls.js";
import { ClosedError } from "./errors.js";
import { notificationFromPb, priorityToPb, type Notification, type Priority } from "./models.js";

export interface PublisherOptions {
  target?: string;
  token?: TokenSource;
  user?: string;
  timeoutMs?: number;
  retries?: number;
  backoff?: BackoffPolicy;
}

export interface CreateOptions {
  message?: string;
  data?: Record<string, unknown>;
  priority?: Priority;
  idempotencyKey?: string;
  /** Never delivered, listed or counted after this instant (must be in the future). */
  expiresAt?: Date;
  /** Deliver and count it even when the user muted its type (e.g. a security alert). */
  ignoreMutes?: boolean;
  timeoutMs?: number;
}

export interface CreateResult {
  notification: Notification;
  /** False when the idempotency key matched an earlier notification. */
  created: boolean;
}

export class Publisher {
  private readonly owned: OwnedTransport;
  private readonly client: Client<typeof NotificationAdminService>;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly backoff: BackoffPolicy;
  private closed = false;

  constructor(private readonly options: PublisherOptions = {}) {
    this.owned = openTransport(options.target ?? DEFAULT_TARGET);
    this.client = createClient(NotificationAdminService, this.owned.transport);
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.retries = options.retries ?? 3;
    this.backoff = options.backoff ?? new Backoff({ baseMs: 100, capMs: 2000 });
  }

  /** Create one notification for `userId`. */
  async create(userId: string | number, type: string, title: string, options: CreateOptions = {}): Promise<CreateResult> {
    const request = {
      userId: String(userId),
      type,
      title,
      message: options.message ?? "",
      dataJson: options.data ? JSON.stringify(options.data) : "",
      priority: priorityToPb(options.priority ?? "normal"),
      idempotencyKey: options.idempotencyKey ?? randomUUID(),
      expiresAt: options.expiresAt === undefined ? undefined : timestampFromDate(options.expiresAt),
      ignoreMutes: options.ignoreMutes ?? false,
    };
    const response = await this.call(
      (timeoutMs) => this.client.createNotification(request, { timeoutMs, headers: this.headers() }),
      options.timeoutMs,
      true,
    );
    if (response.notification === undefined) throw new Error("the server sent no notification");
    return { notification: notificationFromPb(response.notification), created: response.created };
  }

  /** One notification per recipient (or every known user); resolves with how many. */
  async broadcast(
    type: string,
    title: string,
    recipients: { userIds: readonly (string | number)[] } | { all: true },
    options: Omit<CreateOptions, "idempotencyKey"> = {},
  ): Promise<bigint> {
    const request = {
      userIds: "userIds" in recipients ? recipients.userIds.map(String) : [],
      all: "all" in recipients,
      type,
      title,
      message: options.message ?? "",
      dataJson: options.data ? JSON.stringify(options.data) : "",
      priority: priorityToPb(options.priority ?? "normal"),
      expiresAt: options.expiresAt === undefined ? undefined : timestampFromDate(options.expiresAt),
      ignoreMutes: options.ignoreMutes ?? false,
    };
    const response = await this.call(
      (timeoutMs) => this.client.broadcastNotification(request, { timeoutMs, headers: this.headers() }),
      options.timeoutMs,
      false,
    );
    return response.created;
  }

  /** Whether `userId` (default: the caller) has live sessions. */
  async status(userId?: string | number): Promise<{ userId: string; connected: boolean; connectionCount: number }> {
    const response = await this.call(
      (timeoutMs) =>
        this.client.getConnectionStatus(
          { userId: userId === undefined ? "" : String(userId) },
          { timeoutMs, headers: this.headers() },
        ),
      undefined,
      true,
    );
    return { userId: response.userId, connected: response.connected, connectionCount: response.connectionCount };
  }

  /** Close every live session of `userId` (their streams end with ABORTED). */
  async disconnect(userId: string | number): Promise<bigint> {
    const response = await this.call(
      (timeoutMs) => this.client.disconnectUser({ userId: String(userId) }, { timeoutMs, headers: this.headers() }),
      undefined,
      true,
    );
    return response.disconnected;
  }

  close(): void {
    this.closed = true;
    this.owned.close();
  }

  private headers(): Record<string, string> {
    return identityHeaders({ token: this.options.token, user: this.options.user });
  }

  private async call<T>(attempt: (timeoutMs: number) => Promise<T>, timeoutMs: number | undefined, retry: boolean): Promise<T> {
    if (this.closed) throw new ClosedError("this Publisher is closed");
    return callWithRetries(attempt, { timeoutMs: timeoutMs ?? this.timeoutMs, retries: this.retries, backoff: this.backoff, retry });
  }
}
