/** Tidings for TypeScript on Node: a resuming Subscriber, an Inbox and a small Publisher over gRPC. */

export { Backoff, fullJitter, seededRandom, type BackoffOptions, type BackoffPolicy, type RandomSource } from "./backoff.js";
export { DEFAULT_TARGET, type Target, type TokenSource } from "./channel.js";
export { AuthError, ClosedError, CommandError, ReconnectGaveUp, RpcError, TidingsError } from "./errors.js";
export { Inbox, type InboxOptions, type ListOptions } from "./inbox.js";
export type {
  ConnectionInfo,
  Counts,
  InboxEvent,
  InboxListener,
  MarkResult,
  Notification,
  Page,
  Priority,
  Subscription,
  TypeCounts,
} from "./models.js";
export { Publisher, type CreateOptions, type CreateResult, type PublisherOptions } from "./publisher.js";
export type { DisconnectReason, StateEvent, StateListener } from "./states.js";
export { DEAD_AFTER_HEARTBEATS, Subscriber, type SubscriberOptions } from "./subscriber.js";
