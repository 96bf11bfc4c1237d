/**
 * Reconnect and retry delays: exponential backoff with full jitter.
 *
 * delay(n) = U(0, min(cap, base · 2ⁿ)) for the n-th consecutive failed attempt (n = 0, 1, …).
 * The random source is injected, so tests assert on the delays rather than the wall clock.
 */

/** Uniform floats in [0, 1), such as `Math.random`. */
export type RandomSource = () => number;

/** The delay (ms) before retry number `attempt` (0-based), given a uniform `sample`. */
export function fullJitter(attempt: number, baseMs: number, capMs: number, sample: number): number {
  const ceiling = attempt >= 64 ? capMs : Math.min(capMs, baseMs * 2 ** attempt);
  return sample * ceiling;
}

/** What the Subscriber and Publisher ask of a backoff strategy. */
export interface BackoffPolicy {
  /** Consecutive failed attempts allowed before giving up; `undefined`: forever. */
  readonly maxAttempts: number | undefined;
  /** Milliseconds to wait before retry number `attempt` (0-based). */
  delayMs(attempt: number): number;
  /** Milliseconds to wait after an operator disconnect (gRPC ABORTED, WebSocket 4001). */
  delayAfterAbortMs(attempt: number): number;
}

export interface BackoffOptions {
  baseMs?: number;
  capMs?: number;
  maxAttempts?: number;
  /** The least wait after an operator disconnect: reconnecting at once would defeat it. */
  afterAbortMs?: number;
  random?: RandomSource;
}

/** Exponential backoff with full jitter, a cap and an optional attempt limit. */
export class Backoff implements BackoffPolicy {
  readonly baseMs: number;
  readonly capMs: number;
  readonly maxAttempts: number | undefined;
  readonly afterAbortMs: number;
  private readonly random: RandomSource;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? 500;
    this.capMs = options.capMs ?? 30_000;
    this.maxAttempts = options.maxAttempts;
    this.afterAbortMs = options.afterAbortMs ?? 15_000;
    this.random = options.random ?? Math.random;
    if (!(this.baseMs > 0) || this.capMs < this.baseMs) throw new RangeError("need 0 < baseMs <= capMs");
    if (this.maxAttempts !== undefined && this.maxAttempts < 1) throw new RangeError("maxAttempts must be at least 1");
  }

  delayMs(attempt: number): number {
    return fullJitter(attempt, this.baseMs, this.capMs, this.random());
  }

  delayAfterAbortMs(attempt: number): number {
    return this.afterAbortMs + this.delayMs(attempt);
  }

  /** The first `attempts` delays (draws from the random source, like real retries). */
  schedule(attempts: number): number[] {
    return Array.from({ length: attempts }, (_, n) => this.delayMs(n));
  }
}

/** A seeded uniform source (mulberry32) for reproducible schedules in tests. */
export function seededRandom(seed: number): RandomSource {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
