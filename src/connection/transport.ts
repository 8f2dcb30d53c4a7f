/**
 * What a `Connection` needs from whatever carries its messages.
 *
 * The public `Connection` (connection.ts) knows messages, not sockets: it
 * sends and receives whole byte messages and asks whether one is waiting.
 * A socket (socket-transport.ts, CPython's framing) is one carrier; a ring
 * in shared memory (a `Pipe`) can be another without the public class
 * changing. Object messages are bytes too (objects.ts), so `send`/`recv`
 * and `sendBytes`/`recvBytes` share one framing, as the contract asks.
 */
import { ValueError } from '../errors.js';
import type { SharedHandle } from '../serialize/shared.js';

/** One message's worth of waiting: a message is there, or the peer is gone. */
export interface MessageTransport {
  /**
   * Sends one whole message. Resolves when the transport has taken it (it
   * may still be on its way); rejects if the peer is gone.
   */
  send(message: Uint8Array): Promise<void>;
  /**
   * Takes the next message if one is complete now: the bytes, `EOF` when
   * the peer closed and nothing is left, or null when nothing is there yet.
   * @param maxLength a longer message is an error (and ends the transport), as Python's `recv_bytes(maxlength)`;
   *   refused as soon as its length is known, before its bytes are in.
   */
  take(maxLength?: number): Uint8Array | typeof EOF | null;
  /** Whether `take(maxLength)` would return something other than null now (a message, the end, or a refusal). */
  ready(maxLength?: number): boolean;
  /** Whether this side ended the transport (`close()`, or a refused message). */
  readonly closed: boolean;
  /**
   * Calls `listener` whenever `ready()` may have become true; returns the
   * function that stops it. While any listener is on, the transport keeps
   * the event loop alive (someone is waiting for it).
   */
  onReadable(listener: () => void): () => void;
  /** Releases the carrier. Idempotent. */
  close(): void;
  /**
   * How this transport travels inside a value sent to another process.
   * @throws SerializationError saying why it cannot (a socket belongs to its process).
   */
  handle(): SharedHandle;
}

/** What `take` returns once the peer closed and every message was taken. */
export const EOF: unique symbol = Symbol('EOF');

/** What `takeObject` returns when nothing is there yet (null is a value). */
export const NOT_YET: unique symbol = Symbol('not yet');

/**
 * What a transport that does not depend on the event loop adds (a Pipe's
 * shared memory; a socket is read by the loop, so it has none of this):
 * blocking forms, and objects carried as values rather than bytes, so that
 * small ones skip the serializer.
 */
export interface SyncTransport {
  /** `send`, blocking the thread while there is no room. */
  sendSync(message: Uint8Array): void;
  /** Sends a value as one object message; rejects as `send` does, and with SerializationError for what cannot travel. */
  sendObject(obj: unknown): Promise<void>;
  sendObjectSync(obj: unknown): void;
  /** The next object message's value if one is there (a bytes message is read as an object message), `EOF`, or `NOT_YET`. */
  takeObject(): unknown;
  /** Blocks the thread until `ready()` or `deadline` (a `performance.now()` time); whether ready. */
  waitReadySync(deadline: number): boolean;
  /**
   * `waitReadySync` without blocking the loop; `stop` ends it early (false).
   * Nothing it started outlives the deadline: a wait that times out leaves
   * nothing behind to keep the process alive.
   */
  waitReady(deadline: number, stop?: AbortSignal): Promise<boolean>;
}

/** Whether `t` has the blocking forms. */
export function isSyncTransport(t: MessageTransport): t is MessageTransport & SyncTransport {
  return typeof (t as Partial<SyncTransport>).waitReadySync === 'function';
}

/**
 * Refuses a message longer than `maxLength`, as Python does: nothing is read
 * past a refused message, so `close` ends the connection first. One rule for
 * every transport.
 */
export function refuseOversized(length: number, maxLength: number | undefined, close: () => void): void {
  if (maxLength === undefined || length <= maxLength) return;
  close();
  throw new ValueError(
    `received a message of ${length} bytes, more than maxLength ${maxLength}; the connection is closed ` +
      `(as in Python); pass a larger maxLength, or none`,
  );
}

