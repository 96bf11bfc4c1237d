/** The client's errors: each says whose fault it was and whether retrying can help. */

import { Code, ConnectError } from "@connectrpc/connect";

/** Base class of every error the client throws on purpose. */
export class TidingsError extends Error {
  override name = "TidingsError";
}

/** A call failed with a gRPC status (`code` is Connect's Code enum). */
export class RpcError extends TidingsError {
  override name = "RpcError";
  constructor(
    readonly code: Code,
    message: string,
    /** The docs/PROTOCOL.md §5.5 code from trailer `tidings-error-code`, when sent. */
    readonly errorCode?: string,
    /** The field at fault, from trailer `tidings-error-field`. */
    readonly field?: string,
  ) {
    super(`${Code[code]}: ${message}`);
  }
}

/** UNAUTHENTICATED or PERMISSION_DENIED: fix the credentials; retrying will not help. */
export class AuthError extends RpcError {
  override name = "AuthError";
}

/** The live session answered a command with an `error` message (it stays open). */
export class CommandError extends TidingsError {
  override name = "CommandError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** The Subscriber used up its reconnect attempts. */
export class ReconnectGaveUp extends TidingsError {
  override name = "ReconnectGaveUp";
  constructor(
    readonly attempts: number,
    readonly lastError: string,
  ) {
    super(`gave up after ${attempts} reconnect attempts; last error: ${lastError}`);
  }
}

/** The Subscriber or Publisher was closed. */
export class ClosedError extends TidingsError {
  override name = "ClosedError";
}

/** The client error standing for a failed call. */
export function rpcError(err: unknown): RpcError {
  const ce = ConnectError.from(err);
  const errorCode = ce.metadata.get("tidings-error-code") ?? undefined;
  const field = ce.metadata.get("tidings-error-field") ?? undefined;
  const Kind = ce.code === Code.Unauthenticated || ce.code === Code.PermissionDenied ? AuthError : RpcError;
  return new Kind(ce.code, ce.rawMessage, errorCode, field);
}
