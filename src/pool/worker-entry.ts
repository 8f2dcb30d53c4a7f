/**
 * The module a pool worker child imports for its target (`runWorker`, by
 * reference): the worker loop and the shared-object kinds its config holds
 * (two SimpleQueues, a view of a segment), and nothing else of the package.
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
 */
import '../queue/queue.js';
import '../serialize/views.js';

export { runWorker } from './worker-loop.js';
