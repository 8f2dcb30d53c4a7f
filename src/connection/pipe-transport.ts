/**
 * `mp.Pipe`: two Connections over shared memory, a channel (channel/) per
 * direction, and the holder tables of pipe-ends.ts that tell a reader when
 * its peer is gone.
 *
 * Messages: each is one channel item. `send(obj)` puts the value itself, so
 * small values take the channel's tagged fast path (no serializer) and
 * shared objects inside travel live; `sendBytes` puts a plain Uint8Array.
 * The two stay one stream, as on a socket: `recvBytes` of an object
 * message returns its bytes in the object format of objects.ts (what a
 * socket would have carried), and `recv` of a bytes message reads it as
 * that format (refusing anything else, as on a socket). A value that is
 * itself a plain Uint8Array is boxed on the way, so it is not taken for
 * a bytes message.
 *
 * Shared objects travel in values. `recvBytes` of a value that went
 * through the serializer returns its V8 bytes as they are, undecoded: its
 * handles stay in flight, as in a message not received (nothing revived,
 * no reference taken, none put in flight anew). `recv` of a bytes message
 * revives no handle in it, since bytes may come from anywhere (a socket:
 * objects.ts), with one exception: those very bytes relayed with
 * `sendBytes` (CPython's `_echo` does that) travel as a relayed value, and
 * `recv` at the far end revives its handles, taking them out of flight.
 * The Pipe knows them by their buffer (`relayable`).
 *
 * EOF: a reader gets EOF when its inbox is empty and the peer end is GONE.
 * The order of the two looks matters: GONE is looked at first, so every
 * message committed before the last copy let go is seen by the second look
 * at the ring. The last copy closing commits a Skip frame (`poke`), which
 * wakes the readers asleep on the ring; a peer killed without closing is
 * found by the readers themselves, who sweep the peer's holders (liveness)
 * after every sleep slice without a message, so EOF then comes within
 * ~200 ms. A sender whose peer is GONE gets EOFError (Python: BrokenPipeError):
 * every send looks, sweeping the peer's holders at most once a slice, so a
 * send to a peer killed without closing fails within ~200 ms rather than
 * filling a ring nobody reads; one waiting for room in a full ring checks
 * the peer after every slice.
 */
import { v8 } from '../builtins.js';
import { EOFError, SerializationError, StateError, ValueError } from '../errors.js';
import { EVERY_KIND, registerShared, type SharedHandle } from '../serialize/shared.js';
import { remaining } from '../sync/futex.js';
import { selfTid } from '../liveness.js';
import { Channel, NOTHING, type ChannelHandle } from '../channel/channel.js';
import { Serialized } from '../channel/codec.js';
import { Connection } from './connection.js';
import { framed, objectMessage, readObjectMessage } from './objects.js';
import { PipeEnds, type End } from './pipe-ends.js';
import type { SegmentHandle } from '../shm/segment.js';
import { EOF, NOT_YET, refuseOversized, type MessageTransport, type SyncTransport } from './transport.js';
import { describe } from '../describe.js';

/** Ring bytes per direction. */
const PIPE_CAPACITY = 256 * 1024;
/** How often a waiting end looks at its peer's holders (and how long one sleep lasts at most). */
const SLICE_MS = 200;

/** The key of the box around a sent value that is itself a plain Uint8Array. */
const BOX = '__multiprocessing_ts_pipe_bytes__';

/** The key of the box around a value's bytes relayed with `sendBytes` (see `relayable`). */
const RELAY = '__multiprocessing_ts_pipe_relay__';

/**
 * The buffers of the value messages this isolate's `recvBytes` handed out
 * (each in a buffer of its own): bytes of this tree, handles and all.
 * `sendBytes` of one whole such buffer relays the value; any other bytes
 * are data.
 */
const relayable = new WeakSet<ArrayBufferLike>();

/** Why `recv` of bytes revives no shared object (the end of its refusal). */
const BYTES_REFUSAL =
  'a message sent with sendBytes() carries no live shared object (bytes may come from anywhere, a socket included); ' +
  'send the value itself with send()';

interface PipeHandle extends SharedHandle {
  readonly ends: SegmentHandle;
  readonly end: End;
  readonly duplex: boolean;
  readonly inbox: ChannelHandle | null;
  readonly outbox: ChannelHandle | null;
  /** The holder whose slot counts this handle while in flight. */
  readonly from: number;
}

/** Whether `v` is what `sendBytes` puts (a plain Uint8Array over an ArrayBuffer). */
function isBytesItem(v: unknown): v is Uint8Array {
  return (
    typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Uint8Array.prototype && !((v as Uint8Array).buffer instanceof SharedArrayBuffer)
  );
}

/** Closes copies nobody closed, when their Connection is collected (as Python's `__del__`). */
const unclosed = new FinalizationRegistry<{ ends: PipeEnds; end: End; outbox: Channel | null }>(({ ends, end, outbox }) => {
  try {
    if (ends.letGo(end)) outbox?.poke();
  } catch {
    // The isolate is going away; its slot is swept as dead.
  }
});

export class PipeTransport implements MessageTransport, SyncTransport {
  private closedByUs = false;
  private nextSweep = 0;

  constructor(
    private readonly ends: PipeEnds,
    private readonly end: End,
    private readonly duplex: boolean,
    private readonly inbox: Channel | null,
    private readonly outbox: Channel | null,
  ) {
    unclosed.register(this, { ends, end, outbox }, this);
  }

  private get peer(): End {
    return (1 - this.end) as End;
  }

  get closed(): boolean {
    return this.closedByUs;
  }

  // -------------------------------------------------------------------------
  // Sending

  send(message: Uint8Array): Promise<void> {
    return this.put(sentBytesItem(message));
  }

  sendSync(message: Uint8Array): void {
    this.putSync(sentBytesItem(message));
  }

  sendObject(obj: unknown): Promise<void> {
    try {
      return this.put(valueItem(obj));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  sendObjectSync(obj: unknown): void {
    this.putSync(valueItem(obj));
  }

  private async put(item: unknown): Promise<void> {
    const outbox = this.sendable();
    if (await outbox.put(item, true, Infinity, false, this.giveUpSending)) return;
    this.refused();
  }

  private putSync(item: unknown): void {
    const outbox = this.sendable();
    if (!outbox.putSync(item, true, Infinity, false, this.giveUpSending)) this.refused();
  }

  private sendable(): Channel {
    if (this.closedByUs) throw new StateError('the connection is closed');
    // A peer killed without closing is found here too (a sweep at most once a slice), as Python's EPIPE.
    if (this.peerGone()) throw peerClosed();
    return this.outbox!;
  }

  /** Asked between waits for room in a full ring. */
  private readonly giveUpSending = (): boolean => this.closedByUs || this.peerGone();

  private refused(): never {
    if (this.closedByUs) throw new StateError('the connection was closed while send waited for room');
    throw peerClosed();
  }

  // -------------------------------------------------------------------------
  // Receiving

  take(maxLength?: number): Uint8Array | typeof EOF | null {
    const item = this.next(true);
    if (item === NOTHING) return null;
    if (item === EOF) return EOF;
    const bytes = isBytesItem(item) ? item : item instanceof Serialized ? serializedMessage(item) : objectMessage(unbox(item));
    refuseOversized(bytes.byteLength, maxLength, () => this.close());
    return bytes;
  }

  takeObject(): unknown {
    const item = this.next(false);
    if (item === NOTHING) return NOT_YET;
    if (item === EOF) return EOF;
    if (isBytesItem(item)) return readObjectMessage(item, BYTES_REFUSAL);
    const relayed = relayedBytes(item);
    return relayed ? readObjectMessage(relayed, BYTES_REFUSAL, EVERY_KIND) : unbox(item);
  }

  /** The next item, NOTHING, or EOF. `raw`: a serialized value stays undecoded (a `Serialized`). */
  private next(raw: boolean): unknown {
    if (this.closedByUs) throw new StateError('the connection is closed');
    const inbox = this.inbox!;
    const item = takeNow(inbox, raw);
    if (item !== NOTHING || !this.ends.gone(this.peer)) return item;
    // GONE seen: everything the peer committed is visible now.
    const last = takeNow(inbox, raw);
    return last === NOTHING ? EOF : last;
  }

  /** Whether a message or the end is there (every message is whole: `maxLength` changes nothing). */
  ready(): boolean {
    if (this.closedByUs) return true;
    if (!this.inbox) return false;
    return !this.inbox.empty() || this.ends.gone(this.peer);
  }

  waitReadySync(deadline: number): boolean {
    for (;;) {
      if (this.ready()) return true;
      if (remaining(deadline) === 0) return false;
      if (!this.inbox!.waitItemSync(Math.min(deadline, performance.now() + SLICE_MS))) this.peerGone();
    }
  }

  async waitReady(deadline: number, stop?: AbortSignal): Promise<boolean> {
    const inbox = this.inbox;
    // The sending end of Pipe(false) has nothing to read, ever (a select on a pipe's write end).
    if (!inbox) return idle(deadline, stop);
    for (;;) {
      if (this.ready()) return true;
      if (stop?.aborted || remaining(deadline) === 0) return false;
      // Each sleep ends by the deadline, so one that times out leaves no native wait behind.
      if (!(await inbox.waitItem(Math.min(deadline, performance.now() + SLICE_MS), stop))) this.peerGone();
    }
  }

  onReadable(listener: () => void): () => void {
    const stop = new AbortController();
    // Wait first: the listener is never called before this returns.
    void (async () => {
      while (!stop.signal.aborted) {
        if (await this.waitReady(Infinity, stop.signal)) {
          if (stop.signal.aborted) return;
          listener();
          // A listener that does not stop us: look again after a turn, not in a tight loop.
          await new Promise((r) => setImmediate(r));
        }
      }
    })();
    return () => stop.abort();
  }

  /**
   * Whether the peer end is GONE, sweeping its dead holders when a sweep is
   * due (once a slice: a sweep takes the table's lock and asks the kernel
   * about each holder). Called after a wait came back empty, and before
   * each send.
   */
  private peerGone(): boolean {
    const peer = this.peer;
    if (this.ends.gone(peer)) return true;
    const now = performance.now();
    if (now < this.nextSweep) return false;
    this.nextSweep = now + SLICE_MS;
    if (!this.ends.sweep(peer)) return this.ends.gone(peer);
    // We found the peer dead: wake other readers of this end.
    this.inbox?.poke();
    return true;
  }

  // -------------------------------------------------------------------------

  close(): void {
    if (this.closedByUs) return;
    this.closedByUs = true;
    unclosed.unregister(this);
    this.inbox?.interrupt();
    this.outbox?.interrupt();
    if (this.ends.letGo(this.end)) this.outbox?.poke();
  }

  handle(): SharedHandle {
    if (this.closedByUs) throw new StateError('a closed Connection cannot be sent');
    const handle: PipeHandle = {
      kind: 'PipeConnection',
      ends: this.ends.toHandle(),
      end: this.end,
      duplex: this.duplex,
      inbox: this.inbox?.toHandle() ?? null,
      outbox: this.outbox?.toHandle() ?? null,
      from: selfTid(),
    };
    this.ends.send(this.end);
    return handle;
  }
}

/** Resolves false at `deadline` (never, for Infinity) or when `stop` aborts. */
function idle(deadline: number, stop?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (stop?.aborted) return resolve(false);
    const left = remaining(deadline);
    const timer = left === Infinity ? undefined : setTimeout(done, left);
    stop?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      stop?.removeEventListener('abort', done);
      resolve(false);
    }
  });
}

/**
 * Takes items until one is not a Skip frame or the ring is empty (waiting
 * for the READER slot as long as it takes: another reader of this end
 * holds it only to copy one frame out).
 */
function takeNow(inbox: Channel, raw: boolean): unknown {
  for (;;) {
    const item = inbox.getSync(false, Infinity, raw);
    if (item !== NOTHING || inbox.empty()) return item;
  }
}

/**
 * A serialized value as an object message (objects.ts), its bytes as sent:
 * handles inside stay in flight, none revived, none added; in a buffer of
 * its own, known as `relayable`. A boxed Uint8Array (see `BOX`) is framed as
 * the array it stands for; a relayed value (`RELAY`) is its bytes again.
 */
function serializedMessage(item: Serialized): Uint8Array {
  const value = v8().deserialize(item.bytes) as unknown;
  if (value !== unbox(value)) return objectMessage(unbox(value));
  const relayed = relayedBytes(value);
  let message: Uint8Array;
  if (relayed) {
    // A copy: the deserializer's arrays view its input.
    message = new Uint8Array(Buffer.allocUnsafeSlow(relayed.byteLength).buffer);
    message.set(relayed);
  } else {
    const bytes = framed(item.bytes, true);
    message = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  relayable.add(message.buffer);
  return message;
}

/**
 * What `send` puts for `obj`: a plain Uint8Array boxed (not to be taken for
 * bytes), anything else itself. A value shaped as a relay is refused: it
 * would be read as bytes whose handles are revived, and it may be data
 * from a socket peer.
 */
function valueItem(obj: unknown): unknown {
  if (isBytesItem(obj)) return { [BOX]: obj };
  if (relayedBytes(obj)) {
    throw new SerializationError(`obj has the key '${RELAY}', which multiprocessing-ts reserves for Pipe relays; rename that key`);
  }
  return obj;
}

/** What `sendBytes` puts: a relayed value (a whole `relayable` buffer), or the bytes. */
function sentBytesItem(message: Uint8Array): unknown {
  const buffer = message.buffer;
  if (message.byteOffset === 0 && message.byteLength === buffer.byteLength && relayable.has(buffer)) {
    return { [RELAY]: new Uint8Array(buffer) };
  }
  return bytesItem(message);
}

/** The bytes of a relayed value, if `item` is one. */
function relayedBytes(item: unknown): Uint8Array | null {
  if (typeof item !== 'object' || item === null || !Object.hasOwn(item, RELAY)) return null;
  const bytes = (item as Record<string, unknown>)[RELAY];
  return bytes instanceof Uint8Array && Object.keys(item).length === 1 ? bytes : null;
}

function unbox(item: unknown): unknown {
  if (typeof item === 'object' && item !== null && BOX in item) {
    const keys = Object.keys(item);
    if (keys.length === 1) return (item as Record<string, unknown>)[BOX];
  }
  return item;
}

/** `sendBytes`' bytes as a plain Uint8Array (a view when it can be; shared memory is copied, as it may change). */
function bytesItem(message: Uint8Array): Uint8Array {
  if (message.buffer instanceof SharedArrayBuffer) return new Uint8Array(message);
  if (Object.getPrototypeOf(message) === Uint8Array.prototype) return message;
  return new Uint8Array(message.buffer, message.byteOffset, message.byteLength);
}

function peerClosed(): EOFError {
  return new EOFError('cannot send: the other end of the pipe is closed (every copy of it closed, or its processes ended)');
}

/** A Connection for one end. */
function connectionOf(transport: PipeTransport, end: End, duplex: boolean): Connection {
  return new Connection(transport, { readable: duplex || end === 0, writable: duplex || end === 1 });
}

/**
 * `mp.Pipe(duplex = true)`: a pair of connected Connections over shared
 * memory. With `duplex` false the first only receives and the second only
 * sends. Both ends travel to children (in `args`, inside Queue items, over
 * other pipes) and arrive live; see README "Pipes" for when the peer sees EOF.
 * @example
 * ```ts
 * const [a, b] = mp.Pipe();
 * await a.send({ hello: 'world' });
 * console.log(await b.recv()); // { hello: 'world' }
 * ```
 */
export function Pipe(duplex = true): [Connection, Connection] {
  if (typeof duplex !== 'boolean') throw new ValueError(`Pipe(duplex) takes a boolean, not ${describe(duplex)}`);
  const ends = PipeEnds.create();
  // Channel objects per end: closing one end ends only its own waits.
  const toSecond = duplex ? Channel.create(0, PIPE_CAPACITY) : null;
  const toFirst = Channel.create(0, PIPE_CAPACITY);
  const first = new PipeTransport(ends, 0, duplex, toFirst, toSecond);
  const second = new PipeTransport(ends, 1, duplex, toSecond && Channel.attach(toSecond.toHandle()), Channel.attach(toFirst.toHandle()));
  return [connectionOf(first, 0, duplex), connectionOf(second, 1, duplex)];
}

registerShared('PipeConnection', (h) => {
  const handle = h as PipeHandle;
  const ends = PipeEnds.attach(handle.ends);
  const inbox = handle.inbox && Channel.attach(handle.inbox);
  const outbox = handle.outbox && Channel.attach(handle.outbox);
  ends.arrive(handle.end, handle.from);
  return connectionOf(new PipeTransport(ends, handle.end, handle.duplex, inbox, outbox), handle.end, handle.duplex);
});
