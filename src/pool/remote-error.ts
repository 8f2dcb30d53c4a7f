/**
 * A task's error, carried from a worker to the caller.
 *
 * Structured clone keeps an Error's message and stack but makes every
 * class it does not know a plain `Error` and drops own properties, so a
 * worker sends a record instead: the class name, `name`, `message`,
 * `stack`, its own enumerable properties (encoded: shared objects arrive
 * live; one that cannot travel is replaced by a description), and its
 * `cause` (and an AggregateError's `errors`) likewise. The caller rebuilds
 * an error of the same class name: JavaScript's own error classes and this
 * package's are the real classes (so `instanceof TypeError` and
 * `instanceof mp.ValueError` hold); any other class is a subclass of Error
 * with that name (`err.constructor.name === 'MyError'`). A thrown non-Error
 * value arrives as itself when it can travel.
 */
import { describe } from '../describe.js';
import * as errors from '../errors.js';
import { BUILTIN_ERRORS } from '../errors.js';
import { abandon, encode, type EncodeOptions, type Encoded } from '../serialize/encode.js';
import { decode } from '../serialize/decode.js';
import { EVERY_KIND } from '../serialize/shared.js';

/** What a worker sends for a thrown value. */
export type ErrorRecord =
  | {
      readonly kind: 'error';
      readonly className: string;
      readonly name: string;
      readonly message: string;
      readonly stack: string | undefined;
      /** Own enumerable properties, encoded. */
      readonly props: Record<string, unknown>;
      readonly cause?: ErrorRecord;
      readonly errors?: ErrorRecord[];
    }
  | { readonly kind: 'value'; readonly value: unknown }
  | { readonly kind: 'opaque'; readonly text: string };

/** How deep causes are followed (a cycle of causes stops here too). */
const MAX_DEPTH = 8;

/**
 * Encodes one value for a record; one that cannot travel becomes a
 * description of it. What it holds in flight (shared-object references)
 * goes to `held`, for the sender to give back if the record is never sent.
 */
function travelling(value: unknown, path: string, held: Encoded[], options: EncodeOptions): unknown {
  try {
    const encoded = encode(value, path, options);
    // Leave no reference in flight if V8 refuses it after all.
    try {
      structuredClone(encoded.value);
    } catch {
      abandon(encoded);
      return `[${describe(value)}: cannot be copied to another process]`;
    }
    held.push(encoded);
    return encoded.value;
  } catch {
    return `[${describe(value)}: cannot be copied to another process]`;
  }
}

/**
 * The record of `thrown`, for a worker to send. `held` collects what its
 * values hold in flight: give it back (`abandon`) if the record is not sent.
 * `options`: how its values are encoded (the cluster's records take no
 * shared object: `only` no kind, so each is described instead).
 */
export function toRecord(thrown: unknown, held: Encoded[] = [], depth = 0, options: EncodeOptions = { crossProcess: true }): ErrorRecord {
  if (!(thrown instanceof Error)) {
    const value = travelling(thrown, 'the thrown value', held, options);
    return typeof value === 'string' && value.startsWith('[') && typeof thrown !== 'string'
      ? { kind: 'opaque', text: value }
      : { kind: 'value', value };
  }
  const props: Record<string, unknown> = {};
  for (const key of Object.keys(thrown)) {
    if (key === 'cause' || key === 'errors') continue;
    let value: unknown;
    try {
      value = (thrown as unknown as Record<string, unknown>)[key];
    } catch (err) {
      value = `[a getter that threw: ${String(err)}]`;
    }
    props[key] = travelling(value, `error.${key}`, held, options);
  }
  let name: string;
  let message: string;
  let stack: string | undefined;
  try {
    name = String(thrown.name);
    message = String(thrown.message);
    stack = typeof thrown.stack === 'string' ? thrown.stack : undefined;
  } catch {
    name = 'Error';
    message = '(its message could not be read)';
  }
  const record: {
    kind: 'error';
    className: string;
    name: string;
    message: string;
    stack: string | undefined;
    props: Record<string, unknown>;
    cause?: ErrorRecord;
    errors?: ErrorRecord[];
  } = { kind: 'error', className: thrown.constructor?.name || 'Error', name, message, stack, props };
  if (depth < MAX_DEPTH && 'cause' in thrown && thrown.cause !== undefined) record.cause = toRecord(thrown.cause, held, depth + 1, options);
  if (depth < MAX_DEPTH && thrown instanceof AggregateError && Array.isArray(thrown.errors)) {
    record.errors = thrown.errors.map((e: unknown) => toRecord(e, held, depth + 1, options));
  }
  return record;
}

/**
 * Characters of a message, and of a stack, that `cutDown` keeps. V8 writes
 * a string that is not Latin-1 at two bytes a character: both, with the
 * rest of the record, stay well under the 64 KiB over which a result
 * ring sends an item through a file in /dev/shm, which is full then.
 */
const CUT_CHARS = 4 * 1024;

/** The first `n` characters of `text`, without splitting a surrogate pair. */
function head(text: string, n: number): string {
  if (text.length <= n) return text;
  const code = text.charCodeAt(n - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? n - 1 : n);
}

/**
 * A stand-in for the error `record` when it could not be sent whole (its
 * spill file did not fit in /dev/shm): the same class and name, its message
 * and stack cut to CUT_CHARS and marked so, without its own properties, its
 * `cause` or an AggregateError's `errors`, and with `why` as its cause.
 * Anything else is replaced by `why`.
 */
export function cutDown(record: unknown, why: ErrorRecord): ErrorRecord {
  const r = record as Partial<Extract<ErrorRecord, { kind: 'error' }>> | null | undefined;
  if (r?.kind !== 'error' || typeof r.message !== 'string' || typeof r.className !== 'string' || typeof r.name !== 'string') return why;
  const whole = r.message;
  const name = head(r.name, 256);
  const message =
    (whole.length <= CUT_CHARS ? whole : `${head(whole, CUT_CHARS)}... (${whole.length - CUT_CHARS} more characters)`) +
    ' [cut down: the whole error could not be sent back to the pool; see its cause]';
  let stack = r.stack;
  if (typeof stack === 'string') {
    // A V8 stack starts with "name: message": keep the frames after it.
    const header = `${r.name}: ${whole}`;
    const frames = stack.startsWith(header) ? stack.slice(header.length) : null;
    stack = frames === null ? head(stack, CUT_CHARS) : `${name}: ${message}${head(frames, CUT_CHARS)}`;
  }
  return { kind: 'error', className: head(r.className, 256), name, message, stack, props: {}, cause: why };
}

/** This package's error classes, by name. */
const OURS = new Map<string, new (message?: string) => Error>();
for (const [name, value] of Object.entries(errors as Record<string, unknown>)) {
  if (typeof value === 'function' && value.prototype instanceof Error && name !== 'BufferTooShort') {
    OURS.set(name, value as new (message?: string) => Error);
  }
}

/** Classes made for class names we do not know, one per name. */
const made = new Map<string, new (message?: string) => Error>();

function classNamed(className: string): new (message?: string) => Error {
  const known = (Object.hasOwn(BUILTIN_ERRORS, className) ? BUILTIN_ERRORS[className] : undefined) ?? OURS.get(className) ?? made.get(className);
  if (known) return known;
  // A class whose `name` is the remote one's: `err.constructor.name` reads as there.
  const cls = { [className]: class extends Error {} }[className]!;
  made.set(className, cls);
  return cls;
}

/** Rebuilds the error (or value) a record describes. */
export function fromRecord(record: ErrorRecord): unknown {
  if (record.kind === 'value') return decode(record.value, EVERY_KIND);
  if (record.kind === 'opaque') return new errors.SerializationError(`a task threw ${record.text.slice(1, -1)}`);
  const Cls = classNamed(record.className);
  let err: Error;
  if (record.className === 'AggregateError') {
    err = new AggregateError((record.errors ?? []).map(fromRecord), record.message);
  } else {
    err = new Cls(record.message);
  }
  if (err.name !== record.name) {
    Object.defineProperty(err, 'name', { value: record.name, writable: true, configurable: true, enumerable: false });
  }
  Object.defineProperty(err, 'stack', {
    value: record.stack ?? `${record.name}: ${record.message}`,
    writable: true,
    configurable: true,
    enumerable: false,
  });
  if (record.cause !== undefined) {
    Object.defineProperty(err, 'cause', { value: fromRecord(record.cause), writable: true, configurable: true, enumerable: false });
  }
  for (const [key, value] of Object.entries(record.props)) {
    (err as unknown as Record<string, unknown>)[key] = decode(value, EVERY_KIND);
  }
  return err;
}
