/**
 * The data a child is handed: its args and, for a `Process` subclass, the
 * instance's fields, each encoded under the name its errors use (`args[1].cb`,
 * `worker.conn`), with the segment references they put in flight gathered
 * for the child's ledger and given back when the start fails.
 */
import { v8 } from '../builtins.js';
import { abandon, cloneError, encode, toBytes, type Encoded } from '../serialize/encode.js';
import type { InFlight } from '../shm/segment.js';
import type { StartMethod } from './start-method.js';

export class Payload {
  private readonly parts: Array<{ readonly encoded: Encoded; readonly path: string }> = [];

  constructor(private readonly method: StartMethod) {}

  /**
   * Encodes `value`, named `path` in errors, and returns what the spec
   * carries: for a thread the encoded value (workerData clones it), for a
   * process base64 of its V8 bytes, or null when `empty` (popen.ts says why).
   * @throws SerializationError naming the path of what cannot travel.
   */
  add(value: unknown, path: string, empty: boolean): unknown {
    const encoded = encode(value, path, { crossProcess: this.method === 'process', spawning: true });
    this.parts.push({ encoded, path });
    if (this.method === 'thread') return encoded.value;
    return empty ? null : Buffer.from(toBytes(encoded, path)).toString('base64');
  }

  /** The segment references in flight, one entry each. */
  segments(): InFlight[] {
    return this.parts.flatMap((part) => part.encoded.segments);
  }

  /** Gives back every reference in flight: the child will never take them over. */
  abandon(): void {
    for (const part of this.parts) abandon(part.encoded);
  }

  /**
   * What to call once the child has ended, to give back what its arguments
   * put in flight that no ledger settles (see `InFlight.receiverEnded`).
   * Keeps only those callbacks, not the encoded values.
   */
  whenReceiverEnds(): () => void {
    const calls = this.segments().flatMap((ref) => (ref.receiverEnded ? [ref.receiverEnded] : []));
    return () => {
      for (const call of calls) call();
    };
  }

  /** A worker's refusal to clone its data (a DataCloneError) as an error naming the part, and the path in it, refused. */
  cloneError(err: Error): Error {
    const refused =
      this.parts.find((part) => {
        try {
          v8().serialize(part.encoded.value);
          return false;
        } catch {
          return true;
        }
      }) ?? this.parts[0];
    return refused ? cloneError(refused.encoded.value, refused.path, err) : err;
  }
}
