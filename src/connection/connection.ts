/**
 * `Connection`: one end of a message link (Python's `multiprocessing.connection.Connection`).
 *
 * It knows messages, not how they travel: a `MessageTransport`
 * (transport.ts) carries them. `Listener`/`Client` give it a socket
 * (socket-transport.ts); a shared-memory transport can give it a ring.
 */
import { BufferTooShort, EOFError, StateError, ValueError } from '../errors.js';
import { describe } from '../describe.js';
import { SHARED, type SharedHandle } from '../serialize/shared.js';
import { dropObjectMessage, objectMessage, readObjectMessage } from './objects.js';
import { whenReady } from './ready.js';
import { EOF, type MessageTransport } from './transport.js';

/** What `sendBytes` takes: any bytes (a typed array or DataView, or an ArrayBuffer). */
export type BytesLike = ArrayBufferView | ArrayBuffer | SharedArrayBuffer;

/**
 * One end of a connection. Made by `mp.Listener(...).accept()` and
 * `mp.Client(...)` (over a socket), not with `new`.
 *
 * Every call that may wait returns a Promise: a socket is read by Node's
 * event loop, so a blocking twin (`recvSync`) would block the very loop
 * that delivers the bytes; socket connections have none.
 *
 * @example
 * ```ts
 * await conn.send({ task: 1 });          // any structured-cloneable value, shared objects live
 * const reply = await conn.recv();
 * await conn.sendBytes(new Uint8Array([1, 2, 3]));
 * if (await conn.poll(100)) console.log(await conn.recvBytes());
 * for await (const msg of conn) console.log(msg); // until the peer closes
 * conn.close();
 * ```
 */
export class Connection implements AsyncIterable<unknown> {
  #transport: MessageTransport | null;
  readonly #readable: boolean;
  readonly #writable: boolean;

  /** @internal Use `mp.Client`, `Listener.accept()` (or `mp.Pipe`). */
  constructor(transport: MessageTransport, options: { readable?: boolean; writable?: boolean } = {}) {
    this.#transport = transport;
    this.#readable = options.readable ?? true;
    this.#writable = options.writable ?? true;
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#transport === null;
  }

  /** Whether this end receives (false for the sending end of a one-way pipe). */
  get readable(): boolean {
    return this.#readable;
  }

  /** Whether this end sends (false for the receiving end of a one-way pipe). */
  get writable(): boolean {
    return this.#writable;
  }

  /**
   * Sends a value: anything structured clone copies, with shared objects
   * (Values, Arrays, locks, SharedMemory…) arriving live.
   * @throws SerializationError (rejection) naming the path (`obj.cb`) of what cannot travel; nothing is sent then.
   * @throws EOFError when the peer has closed the connection.
   */
  async send(obj: unknown): Promise<void> {
    const transport = this.#sender('send');
    const message = objectMessage(obj);
    try {
      await transport.send(message.bytes);
    } catch (err) {
      // The receiver will never revive the handles: give their references back.
      dropObjectMessage(message);
      throw err;
    }
  }

  /**
   * Receives the next value sent with `send`.
   * @throws EOFError when the peer closed and nothing is left.
   * @throws SerializationError for a message that is not one of our objects
   *   (a Python pickle is never unpickled; raw bytes are read with `recvBytes`).
   */
  async recv(): Promise<unknown> {
    return readObjectMessage(await this.#next('recv'));
  }

  /**
   * Sends `buf` (or `size` bytes of it from `offset`, in bytes) as one message.
   * The bytes are copied at the call.
   */
  async sendBytes(buf: BytesLike, offset = 0, size?: number): Promise<void> {
    const transport = this.#sender('sendBytes');
    const bytes = bytesOf(buf, 'sendBytes');
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new ValueError(`sendBytes offset must be an integer >= 0, not ${describe(offset)}`);
    }
    if (offset > bytes.byteLength) {
      throw new ValueError(`sendBytes offset ${offset} is past the end of a ${bytes.byteLength}-byte buffer`);
    }
    const length = size ?? bytes.byteLength - offset;
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new ValueError(`sendBytes size must be an integer >= 0, not ${describe(size)}`);
    }
    if (offset + length > bytes.byteLength) {
      throw new ValueError(
        `sendBytes offset ${offset} + size ${length} is past the end of a ${bytes.byteLength}-byte buffer`,
      );
    }
    await transport.send(bytes.subarray(offset, offset + length));
  }

  /**
   * Receives the next message as bytes (whatever sent it: `sendBytes`,
   * `send`, or a Python peer's `send_bytes`).
   * @param maxLength a longer message closes the connection and rejects (as Python).
   * @throws EOFError when the peer closed and nothing is left.
   */
  async recvBytes(maxLength?: number): Promise<Uint8Array> {
    if (maxLength !== undefined && (!Number.isSafeInteger(maxLength) || maxLength < 0)) {
      throw new ValueError(`recvBytes maxLength must be an integer >= 0, not ${describe(maxLength)}`);
    }
    return this.#next('recvBytes', maxLength);
  }

  /**
   * Receives the next message into `buf` from byte `offset`; resolves to
   * its length in bytes.
   * @throws BufferTooShort when it does not fit; the message (consumed) is its `.data`.
   */
  async recvBytesInto(buf: ArrayBufferView | ArrayBuffer | SharedArrayBuffer, offset = 0): Promise<number> {
    const target = bytesOf(buf, 'recvBytesInto');
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > target.byteLength) {
      throw new ValueError(
        `recvBytesInto offset must be an integer from 0 to the buffer's ${target.byteLength} bytes, not ${describe(offset)}`,
      );
    }
    const message = await this.#next('recvBytesInto');
    if (message.byteLength > target.byteLength - offset) {
      throw new BufferTooShort(
        `a message of ${message.byteLength} bytes does not fit in the ${target.byteLength - offset} bytes after offset ${offset}; ` +
          `it is in this error's .data`,
        message,
      );
    }
    target.set(message, offset);
    return message.byteLength;
  }

  /**
   * Whether there is something to read (a message, or the end: then `recv`
   * throws `EOFError`), waiting up to `timeoutMs` (0 or less: just look; `Infinity`: until there is).
   */
  async poll(timeoutMs = 0): Promise<boolean> {
    if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs)) {
      throw new ValueError(`poll timeout must be a number of milliseconds (or Infinity), not ${describe(timeoutMs)}`);
    }
    const transport = this.#receiver('poll');
    // A negative timeout just looks, as in Python.
    return whenReady(transport, Math.max(0, timeoutMs));
  }

  /** Closes this end; the peer then reads what was sent and then gets `EOFError`. Idempotent. */
  close(): void {
    const transport = this.#transport;
    this.#transport = null;
    transport?.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  /** Yields each value received until the peer closes. */
  async *[Symbol.asyncIterator](): AsyncIterator<unknown> {
    for (;;) {
      let value: unknown;
      try {
        value = await this.recv();
      } catch (err) {
        if (err instanceof EOFError) return;
        throw err;
      }
      yield value;
    }
  }

  /** @internal For `mp.wait`: the transport, or null once closed. */
  transportForWait(): MessageTransport | null {
    return this.#transport;
  }

  /** @internal How this end travels inside a value (the transport decides; a socket refuses). */
  [SHARED](): SharedHandle {
    if (!this.#transport) throw new StateError('a closed Connection cannot be sent');
    return this.#transport.handle();
  }

  #sender(call: string): MessageTransport {
    const transport = this.#open(call);
    if (!this.#writable) throw new StateError(`${call}() on a connection that only receives (the first end of Pipe(false))`);
    return transport;
  }

  #receiver(call: string): MessageTransport {
    const transport = this.#open(call);
    if (!this.#readable) throw new StateError(`${call}() on a connection that only sends (the second end of Pipe(false))`);
    return transport;
  }

  #open(call: string): MessageTransport {
    if (!this.#transport) throw new StateError(`${call}() on a closed connection`);
    return this.#transport;
  }

  /** The next whole message, waiting as long as it takes. */
  async #next(call: string, maxLength?: number): Promise<Uint8Array> {
    const transport = this.#receiver(call);
    for (;;) {
      const message = transport.take(maxLength);
      if (message === EOF) throw new EOFError(`${call}(): the peer closed the connection and nothing is left to read`);
      if (message !== null) return message;
      await whenReady(transport, Infinity);
      if (this.#transport !== transport) throw new StateError(`${call}(): the connection was closed while waiting`);
    }
  }
}

/** The bytes of a typed array, DataView or (Shared)ArrayBuffer. */
function bytesOf(buf: unknown, call: string): Uint8Array {
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf instanceof ArrayBuffer || buf instanceof SharedArrayBuffer) return new Uint8Array(buf);
  throw new ValueError(`${call} takes bytes (a Uint8Array or other typed array, a DataView, or an ArrayBuffer), not ${describe(buf)}`);
}
