/** Connection-state events of a Subscriber, handed to its `onState` callback. */

import type { ConnectionInfo } from "./models.js";

export type DisconnectReason =
  | "connect_failed" // the server could not be reached
  | "connect_timeout" // no greeting within connectTimeoutMs
  | "heartbeat_timeout" // silence for 2 × heartbeat_interval: dead connection
  | "unavailable" // the live stream broke: server shutdown, crash or network
  | "aborted" // an operator disconnected the user: wait before reconnecting
  | "slow" // RESOURCE_EXHAUSTED: the client did not keep up
  | "stream_ended" // the server ended the stream without an error
  | "buffer_full" // the application fell behind: resume once it catches up
  | "auth_failed" // UNAUTHENTICATED / PERMISSION_DENIED: no reconnect
  | "token_expired" // not refreshed in time: reconnect with a fresh token (getToken)
  | "error" // any other status
  | "closed"; // the application closed the Subscriber

export type StateEvent =
  | { kind: "connecting"; target: string; attempt: number }
  | { kind: "connected"; target: string; info: ConnectionInfo }
  | { kind: "disconnected"; reason: DisconnectReason; detail: string; willReconnect: boolean }
  | { kind: "reconnecting"; delayMs: number; attempt: number };

export type StateListener = (event: StateEvent) => void;
