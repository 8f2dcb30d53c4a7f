/**
 * Task frames: which asynchronous chain of this thread is running.
 *
 * Locks are owned by OS threads across processes, but inside one thread many
 * async tasks interleave at every `await`. To tell them apart, `withLock`
 * runs its callback in a new *frame*, and every `await` inside the callback
 * continues in that frame, so a lock can record which chain holds it.
 * A child's bootstrap also imports the entry module in a frame marked as the
 * import's, so code that import left running (an unguarded async `main()`)
 * can be recognised later.
 *
 * Carrier: V8's continuation-preserved embedder data (the native addon's
 * `asyncContextGet/Swap`), which V8 captures whenever a promise reaction is
 * created and restores while it runs. Node 20 leaves it unused, and unlike
 * AsyncLocalStorage it costs promises nothing (AsyncLocalStorage installs a
 * promise hook that makes every await of the process ~2.5× slower). Node 22
 * and later may use that slot for their own AsyncLocalStorage, so there, and
 * without the addon, AsyncLocalStorage carries the frame instead.
 * Callback-style APIs (timers, emitters) start with no frame under the
 * native carrier; awaits, `.then` and async functions keep it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { native } from './native/addon.js';

/** One asynchronous chain; frames form a tree towards the thread's root (`null`). */
export interface Frame {
  /**
   * The chain this one was opened in; `null` at the root. `undefined` only
   * between `openTask()` and the first `runInFrame` of a frame whose opener
   * did not need it (`parentOf` fills it in).
   */
  parent: Frame | null | undefined;
  /** True for a frame a lock can be owned by (opened by `withLock`); false for the import's marker frame. */
  readonly task: boolean;
}

interface Carrier {
  get(): Frame | null;
  /** Runs `fn` in `frame`, first filling in an unknown parent with the frame current before. */
  run<T>(frame: Frame, fn: () => T): T;
}

function nativeCarrier(addon: NonNullable<ReturnType<typeof native>>): Carrier {
  return {
    get: () => (addon.asyncContextGet() as Frame | undefined) ?? null,
    run(frame, fn) {
      const previous = addon.asyncContextSwap(frame) as Frame | undefined;
      try {
        if (frame.parent === undefined) frame.parent = previous ?? null;
        return fn();
      } finally {
        addon.asyncContextSwap(previous);
      }
    },
  };
}

function storageCarrier(): Carrier {
  const storage = new AsyncLocalStorage<Frame>();
  return {
    get: () => storage.getStore() ?? null,
    run(frame, fn) {
      if (frame.parent === undefined) frame.parent = storage.getStore() ?? null;
      return storage.run(frame, fn);
    },
  };
}

let carrier: Carrier | null = null;

function pick(): Carrier {
  const major = Number(process.versions.node.split('.')[0]);
  const addon = native();
  return (carrier = addon && major < 22 ? nativeCarrier(addon) : storageCarrier());
}

/**
 * The frame of the synchronous extent being run by `runInFrame`, so that code
 * called synchronously inside it (a Value's accessor in a `withLock`
 * callback) needs no call into the addon. `undefined` outside such an extent.
 */
let syncFrame: Frame | null | undefined;

/** Frames opened in this thread so far: while none, every chain is the root. */
let opened = 0;
/** Task frames opened so far: while none, every lock is held by the root (no addon call on hot paths). */
let tasks = 0;

/** The running chain's frame (`null`: the root, outside any frame). */
export function currentFrame(): Frame | null {
  if (syncFrame !== undefined) return syncFrame;
  if (opened === 0) return null;
  return (carrier ?? pick()).get();
}

/** The task frame a lock acquired now would be held by (`null`: the thread's root). */
export function currentTask(): Frame | null {
  if (tasks === 0) return null;
  const frame = currentFrame();
  return frame !== null && frame.task ? frame : null;
}

/**
 * A new task frame below the running chain (what `withLock` runs its
 * callback in). Its parent is read when first needed: `parentOf` before the
 * frame runs, or `runInFrame` as it enters (which learns it for free).
 */
export function openTask(): Frame {
  opened++;
  tasks++;
  return { parent: undefined, task: true };
}

/** The marker frame a child imports its entry module in. */
export function openImport(): Frame {
  opened++;
  return { parent: null, task: false };
}

/** `frame`'s parent, read now from the running chain if not known yet (call it where the frame was opened). */
export function parentOf(frame: Frame): Frame | null {
  if (frame.parent === undefined) frame.parent = currentFrame();
  return frame.parent;
}

/** Runs `fn` in `frame`: its synchronous part, and every await and `.then` it starts. */
export function runInFrame<T>(frame: Frame, fn: () => T): T {
  const outer = syncFrame;
  syncFrame = frame;
  try {
    return (carrier ?? pick()).run(frame, fn);
  } finally {
    syncFrame = outer;
  }
}

/** Whether code running in `frame` is part of the chain `owner` (the same frame, or one it was opened in). */
export function isWithin(owner: Frame | null, frame: Frame | null): boolean {
  if (owner === null) return true;
  for (let f: Frame | null | undefined = frame; f != null; f = f.parent) if (f === owner) return true;
  return false;
}

/** Whether `frame` is the import's marker frame or was opened inside it. */
export function isFromImport(frame: Frame | null): boolean {
  for (let f: Frame | null | undefined = frame; f != null; f = f.parent) if (!f.task) return true;
  return false;
}
