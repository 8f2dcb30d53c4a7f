/**
 * OS errors restated with what the caller knows (which item, which task,
 * the fix), keeping the fields code checks read: a caller that tests
 * `err.code === 'ENOSPC'` still matches the restated error.
 */

const ERRNO_FIELDS = ['code', 'errno', 'syscall', 'path'] as const;

/**
 * An Error with `message`, caused by `cause`, carrying the cause's errno
 * fields as own enumerable properties (as Node's own errors have them, so
 * they cross a process boundary with the error).
 * @example
 *   throw restated(`writing the task's arguments: ${err.message}`, err);
 */
export function restated(message: string, cause: unknown): NodeJS.ErrnoException {
  const error = new Error(message, { cause }) as NodeJS.ErrnoException;
  for (const field of ERRNO_FIELDS) {
    const value = (cause as NodeJS.ErrnoException | null | undefined)?.[field];
    if (value !== undefined) Object.defineProperty(error, field, { value, writable: true, enumerable: true, configurable: true });
  }
  return error;
}
