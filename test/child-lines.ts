/**
 * Following a child's stdout as JSON lines, and waiting for its end, each
 * wait bounded: for tests whose peers are processes on other (simulated)
 * hosts, which can only report by printing.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export type Event = Record<string, any>;

/** Follows a child's stdout as JSON lines; `next` waits (bounded) for the first unread line that matches. */
export function follow(
  child: ChildProcess,
  label: string,
  waitMs: number,
): { next(match: (e: Event) => boolean, what: string): Promise<Event>; all: Event[] } {
  const all: Event[] = [];
  let read = 0;
  let stderr = '';
  let wake = (): void => {};
  child.stderr?.on('data', (d) => (stderr += d));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    all.push(JSON.parse(line) as Event);
    wake();
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
    wake();
  });
  return {
    all,
    async next(match, what) {
      const deadline = Date.now() + waitMs;
      for (;;) {
        for (; read < all.length; read++) if (match(all[read]!)) return all[read++]!;
        if (exited) throw new Error(`${label} exited before ${what}; it printed ${JSON.stringify(all)}; stderr: ${stderr}`);
        if (Date.now() > deadline) throw new Error(`${label}: timed out waiting for ${what}; it printed ${JSON.stringify(all)}; stderr: ${stderr}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, deadline - Date.now());
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
  };
}

/** How a child ends (its exit code, or its signal), waited for at most `waitMs`. */
export function ending(child: ChildProcess, label: string, waitMs: number): Promise<number | NodeJS.Signals> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode ?? child.signalCode!);
    const timer = setTimeout(() => reject(new Error(`${label} did not end within ${waitMs} ms`)), waitMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? signal!);
    });
  });
}
