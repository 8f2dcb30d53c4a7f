/**
 * The byte framing of a socket connection: CPython's `multiprocessing.connection`
 * wire format, so a Python peer reads our messages and we read its.
 *
 * A message is a 4-byte big-endian length and the bytes. A message longer
 * than 2^31 - 1 bytes has the length 0xFFFFFFFF (-1 as a signed int32), then
 * its length in 8 bytes big-endian. (Python reads the first 4 bytes as a
 * signed int, so a 4-byte length never exceeds 2^31 - 1.)
 *
 * `FrameReader` gathers what a socket delivers and hands out whole messages.
 * It reads a frame's header only when that frame is next, so the size cap
 * (`maxFrame`) in force is the one for that frame: the handshake lowers it
 * before authentication and raises it after, and a frame pipelined behind
 * the last handshake message is judged by the raised cap.
 */
import { constants as bufferConstants } from 'node:buffer';

/** Lengths up to this fit the 4-byte header. */
const SHORT_MAX = 0x7fffffff;
/** The 4-byte length announcing an 8-byte one. */
const LONG_MARK = 0xffffffff;

/** The header announcing a message of `length` bytes. */
export function frameHeader(length: number): Buffer {
  if (length <= SHORT_MAX) {
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32BE(length, 0);
    return header;
  }
  const header = Buffer.allocUnsafe(12);
  header.writeUInt32BE(LONG_MARK, 0);
  header.writeBigUInt64BE(BigInt(length), 4);
  return header;
}

/** The largest message this process can hold in one buffer. */
export const MAX_MESSAGE = bufferConstants.MAX_LENGTH;

/** A frame the reader refuses (its header announces more than the cap). */
export class OversizedFrame extends Error {
  constructor(
    readonly length: number,
    readonly cap: number,
  ) {
    super(`a message of ${length} bytes exceeds the limit of ${cap} bytes`);
  }
}

/** Whole messages out of a byte stream. */
export class FrameReader {
  private chunks: Buffer[] = [];
  /** Bytes held in `chunks`. */
  private held = 0;
  /** The next frame's header size and message length, once its header is in. */
  private head: { header: number; length: number } | null = null;

  /** The largest message accepted; a larger announced length is an `OversizedFrame`. */
  maxFrame = MAX_MESSAGE;

  /** Bytes received and not yet handed out. */
  get buffered(): number {
    return this.held;
  }

  /** Adds bytes as they arrived. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.held += chunk.length;
  }

  /**
   * Whether the next message is complete.
   * @throws OversizedFrame when its header announces more than `maxFrame`.
   */
  hasMessage(): boolean {
    const head = this.readHead();
    return head !== null && this.held >= head.header + head.length;
  }

  /**
   * The length the next frame's header announces, or null until its header
   * is in (before its bytes are: a refusal need not wait for them).
   * @throws OversizedFrame as `hasMessage`.
   */
  announced(): number | null {
    return this.readHead()?.length ?? null;
  }

  /** Whether some bytes of an unfinished message are held (a peer that hangs up now cut a message short). */
  get partial(): boolean {
    return this.held > 0;
  }

  /**
   * The next message, or null when it is not complete yet.
   * @throws OversizedFrame as `hasMessage`.
   */
  take(): Buffer | null {
    if (!this.hasMessage()) return null;
    const { header, length } = this.head!;
    this.head = null;
    this.consume(header);
    return this.consume(length);
  }

  /** Parses the next frame's header once enough bytes are in. */
  private readHead(): { header: number; length: number } | null {
    if (this.head) return this.checked(this.head);
    if (this.held < 4) return null;
    const first = this.peek(4).readUInt32BE(0);
    if (first !== LONG_MARK) return this.checked((this.head = { header: 4, length: first }));
    if (this.held < 12) return null;
    const long = this.peek(12).readBigUInt64BE(4);
    // Beyond what one buffer can hold: refused by any cap.
    const length = long > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(long);
    return this.checked((this.head = { header: 12, length }));
  }

  private checked(head: { header: number; length: number }): { header: number; length: number } {
    if (head.length > this.maxFrame) throw new OversizedFrame(head.length, this.maxFrame);
    return head;
  }

  /** The first `n` held bytes, without consuming them (n <= 12, so a copy is cheap when they straddle chunks). */
  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    return Buffer.concat(this.chunks, Math.min(this.held, 16)).subarray(0, n);
  }

  /** Removes and returns the first `n` held bytes (n <= held). */
  private consume(n: number): Buffer {
    this.held -= n;
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first!.length === n) {
      this.chunks.shift();
      return first!;
    }
    if (first!.length > n) {
      this.chunks[0] = first!.subarray(n);
      return first!.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0]!;
      const part = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, part);
      filled += part;
      if (part === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(part);
    }
    return out;
  }
}
