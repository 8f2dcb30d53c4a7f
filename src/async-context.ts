/**
 * Frames: which asynchronous chain of this thread is running.
 *
 * Locks are owned by OS threads across processes, but inside one thread many
 * async tasks interleave at every `await`. To tell them apart, `withLock`
 * runs its callback in a new *task* frame, and every `await` inside the
 * callback continues in that frame, so a lock can record which chain holds
 * it. A child also runs its target in a *target* frame (only code of the
 * target's chain may start grandchildren) and imports its entry module in an
 * *import* frame (code that import started is told apart even when it runs
 * later, such as an unguarded async `main()`).
 *
 * Carrier: V8's continuation-preserved embedder data (the native addon's
 * `asyncContextGet/Swap`), which V8 captures whenever a promise reaction is
 * created and restores while it runs. Node 20 leaves it unused, and unlike
 * AsyncLocalStorage it costs promises nothing (AsyncLocalStorage installs a
 * promise hook that makes every await of the process ~2.5× slower). Node 22
 * and later may use that slot for their own AsyncLocalStorage, so there, and
 * without the addon, AsyncLocalStorage carries the frame instead.
 *
 * Awaits, `.then` and async functions keep the frame under both carriers.
 * So do callbacks of timers, `setImmediate`, `process.nextTick` and
 * `queueMicrotask`: under the native carrier, once the first frame is
 * opened, those schedulers are wrapped (for the rest of the isolate's life)
 * to pass on the frame they were called in (references taken before that,
 * e.g. `const { setTimeout } = require('timers')`, are not). Callbacks of
 * event emitters and callback-style I/O start with no frame under the
 * native carrier (AsyncLocalStorage carries them, and everything else).
 *
 * The state lives on `globalThis` under a registered symbol: a child's
 * bootstrap is bundled apart from the package, and both copies of this
 * module must see the same frames.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { syncBuiltinESMExports } from 'node:module';
import timers from 'node:timers';
import { native } from './native/addon.js';

/** What a frame is for. */
export const enum FrameKind {
  /** Opened by `withLock`: a lock can be held by it. */
  Task,
  /** A child's target and everything it runs. */
  Target,
  /** A child's import of its entry module and everything that started. */
  Import,
}

/** One asynchronous chain; frames form a tree towards the thread's root (`null`). */
export interface Frame {
  /**
   * The chain this one was opened in (its nearest frame not over); `null`
   * at the root. `undefined` only between `openTask()` and the frame's
   * first `runInFrame`, which fills it in as it enters.
   */
  parent: Frame | null | undefined;
  readonly kind: FrameKind;
  /** Set when a task frame's `withLock` is over: frames opened later in its chain skip it as a parent, so chains stay as long as the live tasks. */
  done: boolean;
}

/** The nearest frame from `frame` up that is not over. */
function live(frame: Frame | null | undefined): Frame | null {
  let f = frame ?? null;
  while (f !== null && f.done) f = f.parent ?? null;
  return f;
}

interface Carrier {
  get(): Frame | null;
  /** Runs `fn` in `frame`, first filling in an unknown parent with the frame current before. */
  run<T>(frame: Frame, fn: () => T): T;
}

interface ContextState {
  carrier: Carrier | null;
  /**
   * The frame of the synchronous extent being run by `runInFrame`, so that
   * code called synchronously inside it (a Value's accessor in a `withLock`
   * callback) needs no call into the addon. `undefined` outside such an extent.
   */
  syncFrame: Frame | null | undefined;
  /** Frames opened in this isolate so far: while none, every chain is the root. */
  opened: number;
  /** Task frames opened so far: while none, every lock is held by the root (no addon call on hot paths). */
  tasks: number;
}

// Versioned: a copy of the package with another layout keeps its own state.
const KEY = Symbol.for('multiprocessing-ts.async-context.v1');
const state: ContextState = ((globalThis as { [KEY]?: ContextState })[KEY] ??= {
  carrier: null,
  syncFrame: undefined,
  opened: 0,
  tasks: 0,
});

function nativeCarrier(addon: NonNullable<ReturnType<typeof native>>): Carrier {
  return {
    get: () => (addon.asyncContextGet() as Frame | undefined) ?? null,
    run(frame, fn) {
      const previous = addon.asyncContextSwap(frame) as Frame | undefined;
      try {
        if (frame.parent === undefined) frame.parent = live(previous);
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
      if (frame.parent === undefined) frame.parent = live(storage.getStore());
      return storage.run(frame, fn);
    },
  };
}

function carrier(): Carrier {
  if (state.carrier) return state.carrier;
  const major = Number(process.versions.node.split('.')[0]);
  const addon = native();
  if (addon && major < 22) {
    state.carrier = nativeCarrier(addon);
    // AsyncLocalStorage carries frames through these itself.
    carryFramesThroughSchedulers();
  } else {
    state.carrier = storageCarrier();
  }
  return state.carrier;
}

type Scheduler = (this: unknown, callback: unknown, ...rest: unknown[]) => unknown;

/**
 * Wraps the callback schedulers so each passes on the frame it was called
 * in (what AsyncLocalStorage does for them, and V8's slot does not).
 */
function carryFramesThroughSchedulers(): void {
  const owners: Array<[Record<string, unknown>, string]> = [
    [globalThis as unknown as Record<string, unknown>, 'setTimeout'],
    [globalThis as unknown as Record<string, unknown>, 'setInterval'],
    [globalThis as unknown as Record<string, unknown>, 'setImmediate'],
    [globalThis as unknown as Record<string, unknown>, 'queueMicrotask'],
    [process as unknown as Record<string, unknown>, 'nextTick'],
    [timers as unknown as Record<string, unknown>, 'setTimeout'],
    [timers as unknown as Record<string, unknown>, 'setInterval'],
    [timers as unknown as Record<string, unknown>, 'setImmediate'],
  ];
  const wrapped = new Map<Scheduler, Scheduler>();
  for (const [owner, key] of owners) {
    const original = owner[key] as Scheduler;
    if (typeof original !== 'function') continue;
    let wrapper = wrapped.get(original);
    if (!wrapper) {
      wrapper = function scheduleInFrame(this: unknown, callback: unknown, ...rest: unknown[]): unknown {
        const frame = currentFrame();
        if (frame === null || typeof callback !== 'function') return original.call(this, callback, ...rest);
        // Node calls a timer's callback with the Timeout as `this` (clearInterval(this)).
        return original.call(
          this,
          function inFrame(this: unknown, ...args: unknown[]) {
            return runInFrame(frame, () => (callback as Function).apply(this, args));
          },
          ...rest,
        );
      };
      // Keep what hangs off the original (`setTimeout[promisify.custom]`…).
      for (const prop of Reflect.ownKeys(original)) {
        if (prop === 'prototype' || prop === 'length' || prop === 'name') continue;
        Object.defineProperty(wrapper, prop, Object.getOwnPropertyDescriptor(original, prop)!);
      }
      Object.defineProperty(wrapper, 'name', { value: original.name });
      wrapped.set(original, wrapper);
    }
    owner[key] = wrapper;
  }
  // `import { setTimeout } from 'node:timers'` binds the export, not the property.
  syncBuiltinESMExports();
}

/** The running chain's frame (`null`: the root, outside any frame). */
export function currentFrame(): Frame | null {
  const sync = state.syncFrame;
  if (sync !== undefined) return sync;
  if (state.opened === 0) return null;
  return carrier().get();
}

/** The task frame a lock acquired now would be held by (`null`: the thread's root). */
export function currentTask(): Frame | null {
  if (state.tasks === 0) return null;
  const frame = currentFrame();
  return frame !== null && frame.kind === FrameKind.Task ? frame : null;
}

/**
 * A new task frame below the running chain (what `withLock` runs its
 * callback in). Its parent is filled in by `runInFrame` as it enters, which
 * learns the frame current until then for free.
 */
export function openTask(): Frame {
  state.opened++;
  state.tasks++;
  return { parent: undefined, kind: FrameKind.Task, done: false };
}

/** A child's target frame, or the frame a child imports its entry module in. */
export function openRoot(kind: FrameKind.Target | FrameKind.Import): Frame {
  state.opened++;
  return { parent: null, kind, done: false };
}

/** Runs `fn` in `frame`: its synchronous part, and every await and `.then` it starts. */
export function runInFrame<T>(frame: Frame, fn: () => T): T {
  const outer = state.syncFrame;
  state.syncFrame = frame;
  try {
    return carrier().run(frame, fn);
  } finally {
    state.syncFrame = outer;
  }
}

/** Whether code running in `frame` is part of the chain `owner` (the same frame, or one it was opened in). */
export function isWithin(owner: Frame | null, frame: Frame | null): boolean {
  if (owner === null) return true;
  for (let f: Frame | null | undefined = frame; f != null; f = f.parent) if (f === owner) return true;
  return false;
}

/** The kind of the root frame `frame` runs under (Target, Import), or null outside both. */
export function rootKind(frame: Frame | null): FrameKind | null {
  for (let f: Frame | null | undefined = frame; f != null; f = f.parent) if (f.kind !== FrameKind.Task) return f.kind;
  return null;
}
