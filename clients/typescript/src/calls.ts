/** Unary calls with a deadline and bounded retries of UNAVAILABLE (Publisher and Inbox). */

import { Code, ConnectError } from "@connectrpc/connect";
import type { BackoffPolicy } from "./backoff.js";
import { rpcError } from "./errors.js";

/** Runs `attempt(remaining ms)` until it succeeds, `timeoutMs` pass, or it fails with
 * anything but UNAVAILABLE (or `retries` are used up, or `retry` is false); failures
 * reject with the client's RpcError / AuthError. */
export async function callWithRetries<T>(
  attempt: (timeoutMs: number) => Promise<T>,
  options: { timeoutMs: number; retries: number; backoff: BackoffPolicy; retry: boolean },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  for (let failures = 0; ; failures++) {
    try {
      return await attempt(Math.max(deadline - Date.now(), 1));
    } catch (err) {
      const ce = ConnectError.from(err);
      const delay = options.backoff.delayMs(failures);
      if (!options.retry || ce.code !== Code.Unavailable || failures >= options.retries || Date.now() + delay >= deadline) {
        throw rpcError(ce);
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
