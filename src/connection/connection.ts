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
import { SOCKET_REFUSAL, objectMessage, readObjectMessage } from './objects.js';
import { whenReady } from './ready.js';
import { EOF, NOT_YET, isSyncTransport, type MessageTransport, type SyncTransport } from './transport.js';
import { deadlineOf } from '../sync/futex.js';

/** What `sendBytes` takes: any bytes (a typed array or DataView, or an ArrayBuffer). */
export type BytesLike = ArrayBufferView | ArrayBuffer | SharedArrayBuffer;

/**
 * One end of a connection. Made by `mp.Pipe()` (over shared memory),
 * `mp.Listener(...).accept()` and `mp.Client(...)` (over a socket), not
 * with `new`.
 *
 * Every call that may wait returns a Promise. Pipe connections also have
 * blocking twins (`recvSync`, `sendSync`, `pollSync`, `sendBytesSync`,
 * `recvBytesSync`, `recvBytesIntoSync`) for children's hot paths, as the
 * Queue's `getSync`/`putSync`. Socket connections have none: a socket is
 * read by Node's event loop, which a blocking call would block; they
 * throw StateError.
 *
 * @example
 * ```ts
 * await conn.send({ task: 1 });          // any structured-cloneable value (over a Pipe, shared objects live)
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

  /** @internal Use `mp.Pipe`, `mp.Client` or `Listener.accept()`. */
  constructor(transport: MessageTransport, options: { readable?: boolean; writable?: boolean } = {}) {
    this.#transport = transport;
    this.#readable = options.readable ?? true;
    this.#writable = options.writable ?? true;
  }

  /** True once `close()` was called, or the connection closed itself (a message past `maxLength` was refused). */
  get closed(): boolean {
    return this.#transport === null || this.#transport.closed;
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
   * Sends a value: anything structured clone copies. Over a Pipe, shared
   * objects (Values, Arrays, locks, SharedMemory…) inside arrive live; over
   * a Listener/Client socket they are refused (a socket peer is not trusted
   * to name memory or code): send their data.
   * @throws SerializationError (rejection) naming the path (`obj.cb`) of what cannot travel; nothing is sent then.
   * @throws EOFError when the peer has closed the connection.
   */
  async send(obj: unknown): Promise<void> {
    const transport = this.#sender('send');
    if (isSyncTransport(transport)) return transport.sendObject(obj);
    // Over a socket: no shared object, so no reference to give back if the send fails.
    await transport.send(objectMessage(obj));
  }

  /**
   * Receives the next value sent with `send`.
   * @throws EOFError when the peer closed and nothing is left.
   * @throws SerializationError for a message that is not one of our objects
   *   (a Python pickle is never unpickled; raw bytes are read with `recvBytes`),
   *   or, from a socket, one holding a shared object (nothing in it is
   *   revived; the connection stays usable for the next message).
   */
  async recv(): Promise<unknown> {
    const transport = this.#receiver('recv');
    if (!isSyncTransport(transport)) return readObjectMessage(await this.#next('recv'), SOCKET_REFUSAL);
    for (;;) {
      const value = transport.takeObject();
      if (value === EOF) throw eof('recv');
      if (value !== NOT_YET) return value;
      await this.#whenReadable(transport, 'recv');
    }
  }

  /** `send` blocking the thread while the pipe is full (pipe connections only). */
  sendSync(obj: unknown): void {
    this.#syncSender('sendSync').sendObjectSync(obj);
  }

  /** `recv` blocking the thread until a message or the end (pipe connections only). */
  recvSync(): unknown {
    const transport = this.#syncReceiver('recvSync');
    for (;;) {
      const value = transport.takeObject();
      if (value === EOF) throw eof('recvSync');
      if (value !== NOT_YET) return value;
      transport.waitReadySync(Infinity);
    }
  }

  /**
   * Sends `buf` (or `size` bytes of it from `offset`, in bytes) as one message.
   * The bytes are copied at the call.
   */
  async sendBytes(buf: BytesLike, offset = 0, size?: number): Promise<void> {
    const transport = this.#sender('sendBytes');
    await transport.send(slice(buf, offset, size));
  }

  /** `sendBytes` blocking the thread while the pipe is full (pipe connections only). */
  sendBytesSync(buf: BytesLike, offset = 0, size?: number): void {
    this.#syncSender('sendBytesSync').sendSync(slice(buf, offset, size));
  }

  /**
   * Receives the next message as bytes (whatever sent it: `sendBytes`,
   * `send`, or a Python peer's `send_bytes`).
   * @param maxLength a longer message closes the connection and rejects (as Python).
   * @throws EOFError when the peer closed and nothing is left.
   */
  async recvBytes(maxLength?: number): Promise<Uint8Array> {
    checkMaxLength(maxLength);
    return this.#next('recvBytes', maxLength);
  }

  /** `recvBytes` blocking the thread (pipe connections only). */
  recvBytesSync(maxLength?: number): Uint8Array {
    checkMaxLength(maxLength);
    return this.#nextSync('recvBytesSync', maxLength);
  }

  /**
   * Receives the next message into `buf` from byte `offset`; resolves to
   * its length in bytes.
   * @throws BufferTooShort when it does not fit; the message (consumed) is its `.data`.
   */
  async recvBytesInto(buf: ArrayBufferView | ArrayBuffer | SharedArrayBuffer, offset = 0): Promise<number> {
    const target = intoTarget(buf, offset);
    return copyInto(await this.#next('recvBytesInto'), target, offset);
  }

  /** `recvBytesInto` blocking the thread (pipe connections only). */
  recvBytesIntoSync(buf: ArrayBufferView | ArrayBuffer | SharedArrayBuffer, offset = 0): number {
    const target = intoTarget(buf, offset);
    return copyInto(this.#nextSync('recvBytesIntoSync'), target, offset);
  }

  /**
   * Whether there is something to read (a message, or the end: then `recv`
   * throws `EOFError`), waiting up to `timeoutMs` (0 or less: just look; `Infinity`: until there is).
   */
  async poll(timeoutMs = 0): Promise<boolean> {
    checkTimeout(timeoutMs);
    const transport = this.#receiver('poll');
    // A negative timeout just looks, as in Python.
    return whenReady(transport, Math.max(0, timeoutMs));
  }

  /** `poll` blocking the thread (pipe connections only). */
  pollSync(timeoutMs = 0): boolean {
    checkTimeout(timeoutMs);
    const transport = this.#syncReceiver('pollSync');
    return transport.ready() || transport.waitReadySync(deadlineOf(Math.max(0, timeoutMs)));
  }

  /**
   * Closes this copy of the end (Python: this process's descriptor). The
   * peer reads what was sent, then gets `EOFError`, once every copy of this
   * end is closed (in every process it was sent to) or its holders ended.
   * Idempotent.
   */
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
    if (!this.#writable) {
      throw new StateError(`${call}() on a connection that only receives (the first end of Pipe(false)); send from the second end`);
    }
    return transport;
  }

  #receiver(call: string): MessageTransport {
    const transport = this.#open(call);
    if (!this.#readable) {
      throw new StateError(`${call}() on a connection that only sends (the second end of Pipe(false)); receive on the first end`);
    }
    return transport;
  }

  #open(call: string): MessageTransport {
    if (!this.#transport || this.#transport.closed) throw new StateError(`${call}() on a closed connection`);
    return this.#transport;
  }

  /** The next whole message, waiting as long as it takes. */
  async #next(call: string, maxLength?: number): Promise<Uint8Array> {
    const transport = this.#receiver(call);
    for (;;) {
      const message = transport.take(maxLength);
      if (message === EOF) throw eof(call);
      if (message !== null) return message;
      await this.#whenReadable(transport, call, maxLength);
    }
  }

  /** `#next` blocking the thread. */
  #nextSync(call: string, maxLength?: number): Uint8Array {
    const transport = this.#syncReceiver(call);
    for (;;) {
      const message = transport.take(maxLength);
      if (message === EOF) throw eof(call);
      if (message !== null) return message;
      transport.waitReadySync(Infinity);
    }
  }

  async #whenReadable(transport: MessageTransport, call: string, maxLength?: number): Promise<void> {
    await whenReady(transport, Infinity, undefined, maxLength);
    if (this.#transport !== transport) throw new StateError(`${call}(): the connection was closed while waiting`);
  }

  #syncSender(call: string): MessageTransport & SyncTransport {
    return this.#syncOnly(this.#sender(call), call);
  }

  #syncReceiver(call: string): MessageTransport & SyncTransport {
    return this.#syncOnly(this.#receiver(call), call);
  }

  #syncOnly(transport: MessageTransport, call: string): MessageTransport & SyncTransport {
    if (isSyncTransport(transport)) return transport;
    throw new StateError(
      `${call}() is for Pipe connections; a socket connection (Listener/Client) is read by the event loop, ` +
        `which a blocking call would stop: use the async form (${call.replace(/Sync$/, '')})`,
    );
  }
}

function eof(call: string): EOFError {
  return new EOFError(`${call}(): the peer closed the connection and nothing is left to read`);
}

/** `buf[offset, offset + size)` as bytes, checked. */
function slice(buf: BytesLike, offset: number, size: number | undefined): Uint8Array {
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
    throw new ValueError(`sendBytes offset ${offset} + size ${length} is past the end of a ${bytes.byteLength}-byte buffer`);
  }
  return bytes.subarray(offset, offset + length);
}

function checkMaxLength(maxLength: number | undefined): void {
  if (maxLength !== undefined && (!Number.isSafeInteger(maxLength) || maxLength < 0)) {
    throw new ValueError(`recvBytes maxLength must be an integer >= 0, not ${describe(maxLength)}`);
  }
}

function checkTimeout(timeoutMs: unknown): void {
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs)) {
    throw new ValueError(`poll timeout must be a number of milliseconds (or Infinity), not ${describe(timeoutMs)}`);
  }
}

function intoTarget(buf: unknown, offset: number): Uint8Array {
  const target = bytesOf(buf, 'recvBytesInto');
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > target.byteLength) {
    throw new ValueError(
      `recvBytesInto offset must be an integer from 0 to the buffer's ${target.byteLength} bytes, not ${describe(offset)}`,
    );
  }
  return target;
}

function copyInto(message: Uint8Array, target: Uint8Array, offset: number): number {
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

/** The bytes of a typed array, DataView or (Shared)ArrayBuffer. */
function bytesOf(buf: unknown, call: string): Uint8Array {
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf instanceof ArrayBuffer || buf instanceof SharedArrayBuffer) return new Uint8Array(buf);
  throw new ValueError(`${call} takes bytes (a Uint8Array or other typed array, a DataView, or an ArrayBuffer), not ${describe(buf)}`);
}
