/**
 * Whether an example printed what Python prints (shared by the demo
 * command and test/examples.test.ts).
 *
 * Most examples print one fixed text. Where two processes print at once
 * (example 5, the Pipe), the order of their lines varies from run to run in
 * Python too (../shared/seed/expected-output.md): there the expected file is
 * one typical run, and what must hold is that the same lines appear, and
 * each process's lines (told apart by how they start) in the same order.
 */

/** Examples whose processes' lines interleave, and how each process's lines start. */
const INTERLEAVED = {
  '05-pipe.ts': ['Sent the message: ', 'Received the message: '],
};

/** Whether `stdout` of example `file` matches `expected`. */
export function matchesPython(file, stdout, expected) {
  const streams = INTERLEAVED[file];
  if (!streams) return stdout === expected;
  if (!stdout.endsWith('\n')) return false;
  const got = stdout.split('\n');
  const want = expected.split('\n');
  if (got.length !== want.length || [...got].sort().join('\n') !== [...want].sort().join('\n')) return false;
  return streams.every((start) => {
    const of = (lines) => lines.filter((l) => l.startsWith(start)).join('\n');
    return of(got) === of(want);
  });
}
