/**
 * A `MessageTransport` over a connected socket (Unix or TCP), in CPython's
 * framing (framing.ts).
 *
 * Reading: what the socket delivers is gathered by a `FrameReader`; a
 * message is ready once it is whole. Reading pauses once more than
 * `HIGH_WATER` bytes are held while a whole message waits or nobody waits
 * to read (a recv, poll or `mp.wait`): a fast sender cannot fill our memory
 * with messages nobody takes, nor with the first bytes of one huge message
 * nobody asked for. A message longer than a pending `recvBytes(maxLength)`
 * is refused as soon as its header is in. A connection the Listener has not
 * handed out yet is not read at all (`suspended`).
 *
 * The event loop: like a Python program, which ends when its main code does
 * whatever sockets are open, an idle connection does not keep the process
 * alive. The socket is referenced only while someone waits on it (a recv,
 * poll or `mp.wait`), a write is in progress, or it is closing with data
 * still to flush.
 */
import type { Socket } from 'node:net';
import { EOFError, SerializationError, StateError } from '../errors.js';
import { FrameReader, OversizedFrame, frameHeader } from './framing.js';
import { keepAlive } from './keepalive.js';
import { EOF, refuseOversized, type MessageTransport } from './transport.js';
import type { SharedHandle } from '../serialize/shared.js';

/** Held bytes above which reading pauses while a whole message waits to be taken. */
const HIGH_WATER = 4 * 1024 * 1024;

export class SocketTransport implements MessageTransport {
  private readonly reader = new FrameReader();
  private readonly listeners = new Set<() => void>();
  /** Reasons the socket is referenced (waiters, writes, a closing flush). */
  private holds = 0;
  /** The peer closed (or the socket failed): nothing more will arrive. */
  private ended = false;
  /** Why the socket failed, if it did (a reset peer, a broken pipe). */
  private failure: Error | null = null;
  private closedByUs = false;
  /** Not read at all (a connection waiting for `accept()`). */
  private suspendedReading = false;

  /**
   * @param options.suspended start not reading (see `suspended`); the
   *   socket should be paused already (a server's `pauseOnConnect`), so
   *   that not a byte is read before.
   */
  constructor(
    private readonly socket: Socket,
    options: { suspended?: boolean } = {},
  ) {
    this.suspendedReading = options.suspended ?? false;
    socket.unref();
    socket.setNoDelay?.(true);
    if (this.suspendedReading) socket.pause();
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      this.flow();
      this.notify();
    });
    socket.on('end', () => this.end(null));
    socket.on('error', (err) => this.end(err));
    socket.on('close', () => this.end(null));
  }

  /** Caps the size of the messages accepted from here on (the handshake's guard). */
  set maxFrame(bytes: number) {
    this.reader.maxFrame = bytes;
  }

  /** Whether part of a message has arrived and the rest not yet (a manager's server times out a stalled one). */
  get partialMessage(): boolean {
    return this.reader.partial;
  }

  /** The peer's address (for `Listener.lastAccepted`): `[host, port]` over TCP, `''` over a Unix socket (as Python). */
  get remoteAddress(): string | [string, number] {
    const s = this.socket;
    return s.remoteAddress !== undefined ? [s.remoteAddress, s.remotePort ?? 0] : '';
  }

  get closed(): boolean {
    return this.closedByUs;
  }

  /** Whether the socket is read: not while a Listener holds it for `accept()` (nothing is buffered for nobody). */
  set suspended(on: boolean) {
    this.suspendedReading = on;
    this.flow();
  }

  send(message: Uint8Array): Promise<void> {
    if (this.closedByUs) return Promise.reject(new StateError('the connection is closed'));
    if (this.ended || this.socket.destroyed || !this.socket.writable) {
      return Promise.reject(new EOFError(`cannot send: the peer closed the connection${this.cause()}`));
    }
    // Header and body in one buffer: one write, and the caller's bytes are
    // copied at the call (changing them afterwards changes nothing sent).
    const header = frameHeader(message.byteLength);
    const frame = Buffer.allocUnsafe(header.length + message.byteLength);
    header.copy(frame, 0);
    frame.set(message, header.length);
    this.hold();
    return new Promise((resolve, reject) => {
      this.socket.write(frame, (err) => {
        this.release();
        if (err) reject(new EOFError(`cannot send: the peer closed the connection (${err.message})`, { cause: err }));
        else resolve();
      });
    });
  }

  take(maxLength?: number): Uint8Array | typeof EOF | null {
    if (this.closedByUs) throw new StateError('the connection is closed');
    let message: Buffer | null;
    try {
      // Refused at its header, as Python's recv_bytes(maxlength): its bytes are never waited for.
      const announced = maxLength === undefined ? null : this.reader.announced();
      if (announced !== null) refuseOversized(announced, maxLength, () => this.close());
      message = this.reader.take();
    } catch (err) {
      // A refused frame leaves the stream unframed: nothing after it can be read.
      this.close();
      throw err;
    }
    if (message === null) {
      if (!this.ended) return null;
      if (this.reader.partial) {
        throw new EOFError(`the peer closed the connection in the middle of a message${this.cause()}`);
      }
      return EOF;
    }
    this.flow();
    return message;
  }

  ready(maxLength?: number): boolean {
    if (this.closedByUs || this.ended) return true;
    try {
      if (this.reader.hasMessage()) return true;
      const announced = maxLength === undefined ? null : this.reader.announced();
      return announced !== null && announced > maxLength!; // `take` refuses it
    } catch (err) {
      if (err instanceof OversizedFrame) return true; // `take` reports it
      throw err;
    }
  }

  onReadable(listener: () => void): () => void {
    const entry = (): void => listener();
    this.listeners.add(entry);
    this.hold();
    this.flow();
    let on = true;
    return () => {
      if (!on) return;
      on = false;
      this.listeners.delete(entry);
      this.release();
      this.flow();
    };
  }

  close(): void {
    if (this.closedByUs) return;
    this.closedByUs = true;
    // Flush what was written, then let go; until then the loop stays up.
    if (!this.socket.destroyed) {
      this.hold();
      this.socket.once('close', () => this.release());
      this.socket.destroySoon();
    }
    this.notify();
  }

  /** Ends the connection at once, discarding what is unsent (a failed handshake). */
  /**
   * Makes a TCP connection fail once its peer stops answering for about
   * `deadAfterMs`, and with `boundSending` once what it sends cannot go for
   * that long (keepalive.ts says for which side); whether that was fully set.
   */
  keepAlive(deadAfterMs: number, boundSending: boolean): boolean {
    return keepAlive(this.socket, deadAfterMs, boundSending);
  }

  destroy(): void {
    this.closedByUs = true;
    this.socket.destroy();
    this.notify();
  }

  handle(): SharedHandle {
    throw new SerializationError(
      'a Connection made by Listener/Client: a socket of this process, which no other process can use; ' +
        'send the data instead, or let the other process connect with mp.Client(address) itself',
    );
  }

  /**
   * Pauses or resumes reading: paused while suspended, or while more than
   * `HIGH_WATER` bytes are held and either a whole message waits to be
   * taken or nobody waits for one (see the module comment).
   */
  private flow(): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    const pause =
      this.suspendedReading || (this.reader.buffered > HIGH_WATER && (this.listeners.size === 0 || this.messageWaits()));
    if (pause !== socket.isPaused()) {
      if (pause) socket.pause();
      else socket.resume();
    }
  }

  private messageWaits(): boolean {
    try {
      return this.reader.hasMessage();
    } catch {
      return true;
    }
  }

  private end(err: Error | null): void {
    if (err && !this.failure) this.failure = err;
    if (this.ended) return;
    this.ended = true;
    this.notify();
  }

  private cause(): string {
    return this.failure ? ` (${this.failure.message})` : '';
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  private hold(): void {
    if (this.holds++ === 0) this.socket.ref();
  }

  private release(): void {
    if (--this.holds === 0) this.socket.unref();
  }
}
