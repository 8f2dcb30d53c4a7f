/**
 * Every error this package throws is one of these classes, so callers can
 * `instanceof`-test them across the whole API. Names mirror Python's
 * `multiprocessing` exceptions.
 */

/** Base class of every multiprocessing-ts error (Python's `ProcessError`). */
export class ProcessError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A non-blocking or timed `get` found nothing (Python's `queue.Empty`). */
export class Empty extends ProcessError {}
/** A non-blocking or timed `put` found no room (Python's `queue.Full`). */
export class Full extends ProcessError {}
/** A timed wait ran out. */
export class TimeoutError extends ProcessError {}
/** The peer did not prove knowledge of the authkey. */
export class AuthenticationError extends ProcessError {}
/** `recvBytesInto` got a message larger than the buffer; the message is in `data`. */
export class BufferTooShort extends ProcessError {
  constructor(message: string, readonly data: Uint8Array) {
    super(message);
  }
}
/** A Barrier was broken (reset, aborted, or a wait timed out). */
export class BrokenBarrierError extends ProcessError {}
/** The other end closed and nothing is left to read. */
export class EOFError extends ProcessError {}
/** A pool worker died while running a task. */
export class WorkerLostError extends ProcessError {}
/** An error raised on the other side of a manager connection. */
export class RemoteError extends ProcessError {}
/**
 * An error escaped from a pool task's async work (a timer, a callback, a
 * promise nobody awaited) while the task ran: the task fails with it, the
 * escaped error as its `cause`.
 */
export class UncaughtError extends ProcessError {}
/** A value cannot travel to another process (Python's `MaybeEncodingError`). */
export class SerializationError extends ProcessError {}
/** A value given to the API is not acceptable (bad typecode, size, option…). */
export class ValueError extends ProcessError {}
/** A call is not valid in the object's current state (`start()` twice, …). */
export class StateError extends ProcessError {}
/** A shared-memory name does not exist, or was unlinked before it was attached. */
export class FileNotFoundError extends ProcessError {
  readonly code = 'ENOENT';
}
/** A shared-memory name is taken already. */
export class FileExistsError extends ProcessError {
  readonly code = 'EEXIST';
}
/** A listener's address is taken (a port in use, or a Unix socket path that exists). */
export class AddressInUseError extends ProcessError {
  readonly code = 'EADDRINUSE';
}
/** The native addon is missing and the request needs it (a `'process'` child). */
export class NativeUnavailableError extends ProcessError {}
/** A blocking call that could never return (it would wait for work its own thread must do). */
export class DeadlockError extends ProcessError {}
/** An index outside a fixed-length shared sequence. */
export class IndexError extends ProcessError {}
/** A key that a manager's dict does not hold (Python's `KeyError`). */
export class KeyError extends ProcessError {}
/**
 * A pool can no longer run tasks: its workers kept dying before they
 * finished a task (an initializer that throws, a crash while starting),
 * so it stopped starting new ones (Python's pool would respawn forever).
 * Pending and later calls fail with it; `cause` holds the last worker's
 * error when it had one (the initializer's).
 */
export class BrokenPoolError extends ProcessError {}

/**
 * A cluster context could not do what was asked of Redis: it could not be
 * reached within the connect timeout (the message names the URL without
 * its password), refused the credentials, lost data a call relied on, or a
 * worker could not run a task as sent (its module lacks the function or
 * holds another version of it).
 */
export class ClusterError extends ProcessError {}

/**
 * JavaScript's own error classes by name: what an error that crossed a
 * process boundary as a name and a message is rebuilt as, when the name is
 * one of them (the pool's task errors, a manager's answers).
 */
export const BUILTIN_ERRORS: Readonly<Record<string, ErrorConstructor>> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};
