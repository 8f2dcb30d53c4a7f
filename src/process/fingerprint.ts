/**
 * A fingerprint of a function's source text, so that a child can check that
 * the export it imported is the very function its parent passed, not another
 * one of the same name. Both sides run the same module through the same
 * loader, so the same function has the same text. It runs in every child
 * that imports a target: a few lines, no module loaded for it.
 */

/** Length and 32-bit FNV-1a hash of `fn`'s source (UTF-16 code units). */
export function sourceFingerprint(fn: Function): string {
  const text = Function.prototype.toString.call(fn);
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return `${text.length}:${(hash >>> 0).toString(36)}`;
}
