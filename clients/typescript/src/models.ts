/** What the client hands back: plain objects, with `data` parsed from the wire's `data_json`. */

import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import * as pb from "../gen/tidings/v1/notification_pb.js";
import * as streamPb from "../gen/tidings/v1/stream_pb.js";

export type Priority = "low" | "normal" | "high" | "urgent";

/** One notification of the user (docs/PROTOCOL.md §3). Ids are int64, hence `bigint`. */
export interface Notification {
  id: bigint;
  userId: string;
  type: string;
  title: string;
  message: string;
  data: Record<string, unknown>;
  priority: Priority;
  createdAt: Date | undefined;
  read: boolean;
  readAt: Date | undefined;
  /** The user has looked at the list up to here (the badge no longer counts it). */
  seen: boolean;
  seenAt: Date | undefined;
  /** Out of the default list and the counts; `Inbox.list({ archived: true })` shows it. */
  archived: boolean;
  archivedAt: Date | undefined;
  /** After this instant it is never delivered, listed or counted again. */
  expiresAt: Date | undefined;
  /** Delivered and counted even when the user muted its type. */
  ignoreMutes: boolean;
}

/** Unread and unseen notifications of one type. */
export interface TypeCounts {
  unread: bigint;
  unseen: bigint;
}

/** The badge figures: archived and expired ones never count; muted types count only in
 * `byType` (unless a notification was sent with `ignoreMutes`). */
export interface Counts {
  unread: bigint;
  unseen: bigint;
  /** Every type with a nonzero unread or unseen count, muted ones included. */
  byType: Record<string, TypeCounts>;
}

/** One page of `Inbox.list`, newest first; `nextBeforeId` is the next page's cursor. */
export interface Page {
  notifications: Notification[];
  hasMore: boolean;
  nextBeforeId: bigint | undefined;
}

/** The answer to a mark seen / mark all read. */
export interface MarkResult {
  /** The id the mark went up to (the newest one when the call did not say). */
  upToId: bigint;
  /** How many notifications changed. */
  changed: bigint;
}

/**
 * What happened to the user's inbox, by any session or call of the user, on any node;
 * a Subscriber hands each to its `onEvent` callback, in wire order.
 */
export type InboxEvent =
  | { kind: "markedRead"; notificationId: bigint }
  | { kind: "seen"; upToId: bigint }
  | { kind: "allMarkedRead"; upToId: bigint; notificationType: string | undefined }
  | { kind: "archived"; notificationId: bigint }
  | { kind: "unarchived"; notificationId: bigint }
  | { kind: "deleted"; notificationId: bigint }
  | { kind: "preferencesUpdated"; mutedTypes: string[] };

export type InboxListener = (event: InboxEvent) => void;

/** The server's greeting on a live session. */
export interface ConnectionInfo {
  userId: string;
  connectionId: string;
  /** Seconds between heartbeats; silence for twice this long means the connection is dead. */
  heartbeatInterval: number;
  /** How many replayed notifications follow. */
  queued: number;
  truncated: boolean;
  serverTime: Date | undefined;
}

/** A type filter: only `types`, or (types undefined) every type except `excluded`. */
export interface Subscription {
  types: ReadonlySet<string> | undefined;
  excluded: ReadonlySet<string>;
}

export const EVERYTHING: Subscription = { types: undefined, excluded: new Set() };

export function admits(filter: Subscription, type: string): boolean {
  return filter.types !== undefined ? filter.types.has(type) : !filter.excluded.has(type);
}

/** docs/PROTOCOL.md §5.4: from "all but E" → only T; from "only S" → only S ∪ T. */
export function subscribe(filter: Subscription, types: Iterable<string>): Subscription {
  const added = new Set(types);
  if (filter.types === undefined) return { types: added, excluded: new Set() };
  return { types: new Set([...filter.types, ...added]), excluded: new Set() };
}

/** docs/PROTOCOL.md §5.4: from "only S" → only S \ T; from "all but E" → all but E ∪ T. */
export function unsubscribe(filter: Subscription, types: Iterable<string>): Subscription {
  const removed = new Set(types);
  if (filter.types === undefined) return { types: undefined, excluded: new Set([...filter.excluded, ...removed]) };
  return { types: new Set([...filter.types].filter((t) => !removed.has(t))), excluded: new Set() };
}

const PRIORITY_FROM_PB: Record<number, Priority> = {
  [pb.Priority.LOW]: "low",
  [pb.Priority.NORMAL]: "normal",
  [pb.Priority.HIGH]: "high",
  [pb.Priority.URGENT]: "urgent",
};

export function priorityToPb(priority: Priority): pb.Priority {
  switch (priority) {
    case "low":
      return pb.Priority.LOW;
    case "high":
      return pb.Priority.HIGH;
    case "urgent":
      return pb.Priority.URGENT;
    default:
      return pb.Priority.NORMAL;
  }
}

function date(ts: Timestamp | undefined): Date | undefined {
  return ts === undefined ? undefined : timestampDate(ts);
}

export function parseData(json: string): Record<string, unknown> {
  if (!json) return {};
  try {
    const value: unknown = JSON.parse(json);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

export function notificationFromPb(n: pb.Notification): Notification {
  return {
    id: n.id,
    userId: n.userId,
    type: n.type,
    title: n.title,
    message: n.message,
    data: parseData(n.dataJson),
    priority: PRIORITY_FROM_PB[n.priority] ?? "normal",
    createdAt: date(n.createdAt),
    read: n.read,
    readAt: date(n.readAt),
    seen: n.seen,
    seenAt: date(n.seenAt),
    archived: n.archived,
    archivedAt: date(n.archivedAt),
    expiresAt: date(n.expiresAt),
    ignoreMutes: n.ignoreMutes,
  };
}

export function countsFromPb(c: streamPb.GetCountsResponse | streamPb.CountsEvent): Counts {
  const byType: Record<string, TypeCounts> = {};
  for (const name of Object.keys(c.byType).sort()) {
    const t = c.byType[name]!;
    byType[name] = { unread: t.unread, unseen: t.unseen };
  }
  return { unread: c.unread, unseen: c.unseen, byType };
}

/** The inbox event a live-session message carries, or undefined for any other message. */
export function inboxEventFromPb(message: streamPb.ConnectResponse): InboxEvent | undefined {
  const kind = message.kind;
  switch (kind.case) {
    case "notificationMarkedRead":
      return { kind: "markedRead", notificationId: kind.value.notificationId };
    case "notificationsSeen":
      return { kind: "seen", upToId: kind.value.upToId };
    case "notificationsMarkedRead":
      return { kind: "allMarkedRead", upToId: kind.value.upToId, notificationType: kind.value.notificationType || undefined };
    case "notificationArchived":
      return { kind: "archived", notificationId: kind.value.notificationId };
    case "notificationUnarchived":
      return { kind: "unarchived", notificationId: kind.value.notificationId };
    case "notificationDeleted":
      return { kind: "deleted", notificationId: kind.value.notificationId };
    case "preferencesUpdated":
      return { kind: "preferencesUpdated", mutedTypes: [...kind.value.mutedTypes] };
    default:
      return undefined;
  }
}

export function connectionInfoFromPb(c: streamPb.ConnectionEstablished): ConnectionInfo {
  return {
    userId: c.userId,
    connectionId: c.connectionId,
    heartbeatInterval: c.heartbeatInterval,
    queued: c.queued,
    truncated: c.truncated,
    serverTime: date(c.serverTime),
  };
}

export function subscriptionFromPb(s: streamPb.SubscriptionUpdatedEvent): Subscription {
  if (s.mode === streamPb.FilterMode.ONLY) return { types: new Set(s.notificationTypes), excluded: new Set() };
  return { types: undefined, excluded: new Set(s.excludedTypes) };
}
