import assert from "node:assert/strict";
import { test } from "node:test";
import { Backoff, fullJitter, seededRandom } from "../src/index.js";

test("full jitter samples the capped exponential", () => {
  assert.equal(fullJitter(0, 500, 30_000, 1), 500);
  assert.equal(fullJitter(3, 500, 30_000, 0.5), 2000);
  assert.equal(fullJitter(10, 500, 30_000, 0.5), 15_000);
  assert.equal(fullJitter(10_000, 500, 30_000, 1), 30_000);
});

test("a seeded schedule is reproducible and within its ceilings", () => {
  const one = new Backoff({ baseMs: 100, capMs: 1000, random: seededRandom(7) }).schedule(8);
  const two = new Backoff({ baseMs: 100, capMs: 1000, random: seededRandom(7) }).schedule(8);
  assert.deepEqual(one, two);
  one.forEach((d, n) => assert.ok(d >= 0 && d <= Math.min(1000, 100 * 2 ** n)));
});

test("after an operator disconnect the wait is longer", () => {
  const backoff = new Backoff({ baseMs: 1000, capMs: 8000, afterAbortMs: 20_000, random: () => 0.25 });
  assert.equal(backoff.delayMs(2), 1000);
  assert.equal(backoff.delayAfterAbortMs(2), 21_000);
});
