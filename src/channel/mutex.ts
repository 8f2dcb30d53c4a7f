/**
 * The channel's two slots (one for producers, one for consumers): a tiny
 * robust mutex on one int32 word, held for a few hundred nanoseconds.
 *
 * The word holds the holder's id (liveness.ts `selfTid`: thread id plus a
 * start-time tag), written by the very compare-exchange that takes it, plus
 * the SLEEPERS bit once somebody may sleep on it; 0 is free. A holder
 * SIGKILLed at any instruction therefore leaves its id behind, and the next
 * taker that finds it dead (after a sleep slice) takes the slot over with a
 * compare-exchange, so exactly one taker inherits it and repairs what the
 * dead one left (see channel.ts). Unlike sync/lock.ts there are no task
 * frames: the critical sections here never await, so two tasks of a thread
 * never overlap inside one.
 *
 * Backoff: a compare-exchange, then a spin of a few µs with growing pauses,
 * then a futex sleep (in 100 ms slices, after each of which the holder's
 * liveness is checked). An uncontended release makes no syscall.
 */
import { isAlive, selfTid } from '../liveness.js';
import { WaitResult, releaseHeldWakes, remaining, waitAsync, waitSync, wake } from '../sync/futex.js';

const SLEEPERS = 1 << 30;
const OWNER = SLEEPERS - 1;

/** A holder is checked for life after each sleep slice this long. */
const SLICE_MS = 100;

/** Burns about `steps` cheap operations without touching shared memory (JS has no PAUSE). */
let sink = 0;
export function spinPause(steps: number): void {
  let x = sink;
  for (let i = 0; i < steps; i++) x = (x * 31 + i) | 0;
  sink = x;
}

/** How taking a slot went. */
export const enum Taken {
  No = 0,
  Yes = 1,
  /** Taken over from a holder that died inside: the caller repairs. */
  FromDead = 2,
}

export function tryTake(w: Int32Array, i: number): boolean {
  return Atomics.compareExchange(w, i, 0, selfTid()) === 0;
}

/** Spins a few µs for the slot. */
function spinTake(w: Int32Array, i: number): boolean {
  releaseHeldWakes();
  const me = selfTid();
  let pause = 1;
  for (let spent = 0; spent < 4_000; spent += pause + 1) {
    if (Atomics.load(w, i) === 0 && Atomics.compareExchange(w, i, 0, me) === 0) return true;
    spinPause(pause);
    if (pause < 64) pause <<= 1;
  }
  return false;
}

/** Takes a free slot (marked, as others may sleep) or marks a held one; returns Yes or the word to sleep on. */
function claimOrMark(w: Int32Array, i: number): Taken.Yes | number {
  const me = selfTid() | SLEEPERS;
  for (;;) {
    const s = Atomics.load(w, i);
    if (s === 0) {
      if (Atomics.compareExchange(w, i, 0, me) === 0) return Taken.Yes;
      continue;
    }
    if (s & SLEEPERS || Atomics.compareExchange(w, i, s, s | SLEEPERS) === s) return s | SLEEPERS;
  }
}

/** Takes the slot over when its holder is dead. */
function takeFromDead(w: Int32Array, i: number): boolean {
  const s = Atomics.load(w, i);
  if (s === 0 || (s & OWNER) === selfTid() || isAlive(s & OWNER)) return false;
  return Atomics.compareExchange(w, i, s, selfTid() | SLEEPERS) === s;
}

/** Blocks the thread until the slot is taken, or `deadline` (performance.now()) passes. */
export function takeSync(w: Int32Array, i: number, deadline: number): Taken {
  if (tryTake(w, i) || spinTake(w, i)) return Taken.Yes;
  for (;;) {
    const seen = claimOrMark(w, i);
    if (seen === Taken.Yes) return Taken.Yes;
    const left = remaining(deadline);
    if (left === 0) return takeFromDead(w, i) ? Taken.FromDead : Taken.No;
    const r = waitSync(w, i, seen, Math.min(left, SLICE_MS));
    if (r === WaitResult.TimedOut && takeFromDead(w, i)) return Taken.FromDead;
  }
}

/** `takeSync` without blocking the event loop (after the same short spin). */
export async function takeAsync(w: Int32Array, i: number, deadline: number): Promise<Taken> {
  if (tryTake(w, i) || spinTake(w, i)) return Taken.Yes;
  for (;;) {
    const seen = claimOrMark(w, i);
    if (seen === Taken.Yes) return Taken.Yes;
    const left = remaining(deadline);
    if (left === 0) return takeFromDead(w, i) ? Taken.FromDead : Taken.No;
    const r = await waitAsync(w, i, seen, Math.min(left, SLICE_MS));
    if (r === WaitResult.TimedOut && takeFromDead(w, i)) return Taken.FromDead;
  }
}

/** Lets the slot go; wakes one sleeper if any may sleep. */
export function give(w: Int32Array, i: number): void {
  if (Atomics.exchange(w, i, 0) & SLEEPERS) wake(w, i, 1);
}
