/**
 * Waiting for a transport to become readable, bounded or not: the one wait
 * under `recv`, `poll`, the handshake and `mp.wait`.
 */
import type { MessageTransport } from './transport.js';

/**
 * Resolves true once `transport.ready()` (a message or the end is there),
 * or false after `timeoutMs` (Infinity: never). A transport that is ready
 * already resolves at once. `stop`, when given, ends the wait early (false).
 */
export function whenReady(transport: MessageTransport, timeoutMs: number, stop?: AbortSignal): Promise<boolean> {
  if (transport.ready()) return Promise.resolve(true);
  if (timeoutMs <= 0 || stop?.aborted) return Promise.resolve(false);
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
      if (transport.ready()) finish(true);
    });
    if (timeoutMs !== Infinity) timer = setTimeout(() => finish(transport.ready()), timeoutMs);
    stop?.addEventListener('abort', onAbort, { once: true });
  });
}
