/**
 * Waiting for a transport to become readable, bounded or not: the one wait
 * under `recv`, `poll`, the handshake and `mp.wait`.
 */
import { deadlineOf } from '../sync/futex.js';
import { isSyncTransport, type MessageTransport } from './transport.js';

/**
 * Resolves true once `transport.ready(maxLength)` (a message, the end, or
 * a refusal of a message longer than `maxLength` is there), or false after
 * `timeoutMs` (Infinity: never). A transport that is ready already
 * resolves at once. `stop`, when given, ends the wait early (false).
 */
export function whenReady(transport: MessageTransport, timeoutMs: number, stop?: AbortSignal, maxLength?: number): Promise<boolean> {
  if (transport.ready(maxLength)) return Promise.resolve(true);
  if (timeoutMs <= 0 || stop?.aborted) return Promise.resolve(false);
  // A Pipe waits on its ring itself, bounded by the deadline, so a wait
  // that times out leaves no sleep behind (see `SyncTransport.waitReady`).
  if (isSyncTransport(transport)) return transport.waitReady(deadlineOf(timeoutMs), stop);
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const finish = (ready: boolean): void => {
      off();
      clearTimeout(timer);
      stop?.removeEventListener('abort', onAbort);
      resolve(ready);
    };
    const onAbort = (): void => finish(false);
    const off = transport.onReadable(() => {
      if (transport.ready(maxLength)) finish(true);
    });
    if (timeoutMs !== Infinity) timer = setTimeout(() => finish(transport.ready(maxLength)), timeoutMs);
    stop?.addEventListener('abort', onAbort, { once: true });
  });
}
