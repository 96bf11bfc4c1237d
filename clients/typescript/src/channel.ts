/** Where to connect and who to be: targets, caller identity, HTTP/2 transports. */

import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

/** "host:port"; a list of them, tried in turn; or a function asked before every attempt. */
export type Target = string | readonly string[] | (() => string);

/** A JWT, or a function returning a fresh one before every attempt or call. */
export type TokenSource = string | (() => string);

export const DEFAULT_TARGET = "127.0.0.1:50051";

export interface Identity {
  token?: TokenSource | undefined;
  /** The user id, against a server in insecure development mode only. */
  user?: string | undefined;
}

/** The gRPC metadata that carries the caller's identity (docs/PROTOCOL.md §2). */
export function identityHeaders(identity: Identity): Record<string, string> {
  const headers: Record<string, string> = {};
  const token = typeof identity.token === "function" ? identity.token() : identity.token;
  if (token) headers["authorization"] = `Bearer ${token}`;
  if (identity.user) headers["x-tidings-user"] = identity.user;
  return headers;
}

/** Hands out the address of each attempt. */
export function targets(target: Target): () => string {
  if (typeof target === "string") return () => target;
  if (typeof target === "function") return target;
  if (target.length === 0) throw new RangeError("give at least one target address");
  let next = 0;
  return () => target[next++ % target.length]!;
}

/** A transport on its own HTTP/2 connection; `close` drops the connection and its streams. */
export interface OwnedTransport {
  transport: Transport;
  close(): void;
}

export function openTransport(address: string): OwnedTransport {
  const baseUrl = address.includes("://") ? address : `http://${address}`;
  const sessionManager = new Http2SessionManager(baseUrl, { idleConnectionTimeoutMs: 60_000 });
  return {
    transport: createGrpcTransport({ baseUrl, sessionManager }),
    close: () => sessionManager.abort(),
  };
}
