/**
 * Key names in Redis.
 *
 * Every key of one object (a pool, a lock, a queue…) shares the hash tag
 * `{mpts:<kind>:<name>}`, so that on a Redis Cluster they land in one slot
 * and the Lua scripts and transactions that touch several of them stay
 * legal. Names are the user's: they are checked here, so a name cannot
 * reach into another object's keys.
 */
import { ValueError } from '../errors.js';

/** What a user-chosen object name may hold: no braces (hash tags) nor colons (our separators). */
const NAME = /^[A-Za-z0-9_.\-/@]{1,200}$/;

/** Checks a user-chosen object name. */
export function checkName(name: unknown, what: string): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new ValueError(
      `${what} name must be 1–200 characters of letters, digits and _ . - / @, got ${typeof name === 'string' ? JSON.stringify(name) : typeof name}`,
    );
  }
  return name;
}

/** The key prefix of one object: `{mpts:<kind>:<name>}`. */
export function objectKey(kind: string, name: string): string {
  return `{mpts:${kind}:${name}}`;
}

/** A random id for anonymous objects and for callers (16 hex digits). */
export function randomName(): string {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
