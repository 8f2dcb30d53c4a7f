/**
 * Subclassing `Process`, Python's other idiom: what of an instance travels,
 * and how the child rebuilds it.
 *
 * The class goes by reference, as a target does (target.ts): the child
 * imports the module that exports it and checks by fingerprint that it is
 * the very class. The instance goes as its own enumerable fields, encoded
 * like args, so shared objects among them arrive live. The child does not
 * run the constructor: it may have side effects (create shared memory, open
 * files, start timers) that must happen once, in the parent, and the
 * arguments it was called with are gone. It makes `Object.create(prototype)`
 * and sets the fields, as Python's pickle restores an object's `__dict__`
 * without calling `__init__`. Private members (`#x`) can only be made by a
 * constructor, so a class with any is refused at `start()` (target.ts).
 *
 * Part of every child's bootstrap: no imports.
 */

/**
 * The method (on `Process.prototype`) by which a child hands a rebuilt
 * instance its `Process` state. Registered: the class a user extends may
 * come from another copy of the package than the child's runner.
 */
export const REVIVE: unique symbol = Symbol.for('multiprocessing-ts.process.revive');

/** A `Process` as the child's runner sees it once rebuilt. */
interface Revivable {
  [REVIVE](target: Function | null, args: unknown[]): void;
  run(): unknown;
}

/** The own enumerable fields of `instance`: what travels of it. */
export function ownFields(instance: object): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const key of Object.keys(instance)) {
    // defineProperty: a key named `__proto__` stays a field.
    Object.defineProperty(fields, key, {
      value: (instance as Record<string, unknown>)[key],
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
  return fields;
}

/** How an instance's fields are named in error messages: `worker.conn` for a `Worker`. */
export function instancePath(className: string): string {
  if (!className || className === 'default') return 'process';
  return className[0]!.toLowerCase() + className.slice(1);
}

/**
 * An instance of `cls` with `fields`, built without its constructor, made
 * the running process (`target`/`args` are what its default `run()` calls).
 */
export function rebuild(cls: Function, fields: Record<string, unknown>, target: Function | null, args: unknown[]): Revivable {
  const instance = Object.create(cls.prototype as object) as Revivable;
  if (typeof instance[REVIVE] !== 'function' || typeof instance.run !== 'function') {
    throw new TypeError(`${cls.name || 'the class'} is not a subclass of multiprocessing-ts's Process`);
  }
  for (const [key, value] of Object.entries(fields)) {
    // Own data properties, as they were: a setter on the prototype must not run.
    Object.defineProperty(instance, key, { value, writable: true, enumerable: true, configurable: true });
  }
  instance[REVIVE](target, args);
  return instance;
}
