/** The two queues of a Subscriber: requests to the server, notifications to the application. */

import type { Notification } from "./models.js";

/** An async iterable that is written by pushing (the request side of the bidi stream). */
export class Pushable<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private wake: (() => void) | undefined;
  private done = false;

  push(item: T): void {
    if (this.done) return;
    this.items.push(item);
    this.wake?.();
  }

  end(): void {
    this.done = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.done) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

/** Received, not yet handed out notifications; then an end (clean or an error). */
export class Inbox {
  private items: Notification[] = [];
  private end: { error?: unknown } | undefined;
  private waiters: (() => void)[] = [];

  get length(): number {
    return this.items.length;
  }

  put(n: Notification): void {
    if (this.end) return;
    this.items.push(n);
    this.notify();
  }

  finish(error?: unknown, discard = false): void {
    this.end ??= error === undefined ? {} : { error };
    if (discard) this.items = [];
    this.notify();
  }

  async get(): Promise<Notification | undefined> {
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) {
        this.notify();
        return item;
      }
      if (this.end) {
        if (this.end.error !== undefined) throw this.end.error;
        return undefined;
      }
      await this.changed();
    }
  }

  async waitAtMost(size: number): Promise<void> {
    while (this.items.length > size && !this.end) await this.changed();
  }

  private changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
