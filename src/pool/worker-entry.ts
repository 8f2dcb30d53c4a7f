/**
 * The module a pool worker child imports for its target (`runWorker`, by
 * reference): the worker loop and the shared-object kinds its config holds
 * (two SimpleQueues, a view of a segment), and nothing else of the package.
 * A `'thread'` worker is also launched on this module rather than on the
 * bootstrap, and then starts itself as the bootstrap would have.
 *
 * Why: a worker used to load the whole package (the bundle's index.js,
 * ~350 KB) to revive its config, which was the largest part of its start.
 * The bundle makes this an entry of its own (dist/bundle/pool-worker.js)
 * whose modules it shares with index.js through esbuild's code splitting
 * (scripts/bundle.mjs), so a worker parses about a quarter of the package,
 * and a task module that imports the package later gets the very same
 * module instances (classes, registries), not copies. What else a worker
 * may be handed — shared objects of other kinds in `initargs` or in a
 * task's arguments — loads the package first (process/child.ts,
 * worker-loop.ts).
 *
 * Launched on it, a thread skips the bootstrap, a CommonJS file of its own
 * (2–3 ms of a worker's start here) that would then import this module
 * through the ES module loader anyway: the loader starts at once instead,
 * and the thread's start (thread-child.ts) is code this module's chunk
 * shares. Only a thread the pool launched (process.ts `launchChild` with an
 * entry) runs it; imported as a target, in a child the bootstrap started,
 * this module only exports.
 */
import '../queue/queue.js';
import '../serialize/views.js';
import { runtime } from '../runtime.js';
import { awaitsSpecHere, runThreadChild } from '../process/thread-child.js';

export { runWorker } from './worker-loop.js';

if (awaitsSpecHere(runtime().child !== null)) void runThreadChild();
