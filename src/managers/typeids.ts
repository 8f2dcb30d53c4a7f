/**
 * Typeids: what a manager class can make (Python's `BaseManager.register`
 * and `_registry`).
 *
 * A registration belongs to a manager class and is inherited by its
 * subclasses (a subclass may override a typeid). Every registration made in
 * this isolate is also kept in one list on `globalThis`, where the server
 * process finds the factories: functions cannot travel, so the server
 * imports the modules that called `register` (their files are recorded) and
 * takes the registrations those imports made again. Hence the rule: call
 * `register` at the top level of a module (outside `mp.isMainProcess()`).
 */
import { describe } from '../describe.js';
import { ValueError } from '../errors.js';

/** Options of `register(typeid, factory, options)`. */
export interface RegisterOptions {
  /**
   * The methods clients may call. Default: the object's public methods
   * (function-valued, not starting with `_`, not `constructor`), read from
   * each object the factory makes.
   */
  exposed?: readonly string[];
  /** Methods whose results come back as proxies of the given typeid (e.g. `{ iter: 'Iterator' }`) instead of copies. */
  methodToTypeid?: Readonly<Record<string, string>>;
  /**
   * The proxy class clients build: one of this package's (`mp.ListProxy`…)
   * or your subclass of `mp.BaseProxy` (registered in every process that
   * imports this module). Default: a proxy with one async method per exposed method.
   */
  proxytype?: abstract new (...args: any[]) => object;
  /** Whether the manager gets a method named after the typeid that makes one (default true). */
  createMethod?: boolean;
}

/** One typeid of one manager class. */
export interface Registration {
  readonly typeid: string;
  /** Makes the object (in the server); null for a typeid only a server elsewhere can make (`connect()`). */
  readonly factory: Function | null;
  readonly exposed: readonly string[] | null;
  readonly methodToTypeid: Readonly<Record<string, string>>;
  /** The proxy class name clients build ('AutoProxy' by default). */
  readonly proxytype: string;
  readonly createMethod: boolean;
  /** The class `register` was called on. */
  readonly cls: Function;
  /** The file of the module that called `register` (null: built into the package, or code with no file). */
  readonly file: string | null;
  /** Built into the package (SyncManager's typeids): the server has it without importing anything. */
  readonly builtin: boolean;
}

/** What the server process needs to find a registration again (it travels; a Registration does not). */
export interface RegistrationSpec {
  readonly typeid: string;
  readonly owner: string;
  readonly file: string | null;
  readonly builtin: boolean;
  readonly hasFactory: boolean;
}

const ALL = Symbol.for('multiprocessing-ts.manager-registrations');
const all: Registration[] = ((globalThis as { [ALL]?: Registration[] })[ALL] ??= []);

const PROXY_CLASSES = Symbol.for('multiprocessing-ts.manager-proxy-classes');
/** Proxy classes by name, for proxies revived in processes that never called `register` themselves. */
export const proxyClasses: Map<string, Function> = ((globalThis as { [PROXY_CLASSES]?: Map<string, Function> })[PROXY_CLASSES] ??=
  new Map());

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
/** Names no method may have: they would reach the prototype machinery. */
const FORBIDDEN_METHODS = new Set(['constructor', '__proto__', 'prototype', '__defineGetter__', '__defineSetter__', '__lookupGetter__', '__lookupSetter__']);

/** Checks a method name given in `exposed` or `methodToTypeid`. */
function checkMethodName(name: unknown, where: string): string {
  if (typeof name !== 'string' || name.length === 0 || FORBIDDEN_METHODS.has(name)) {
    throw new ValueError(`${where}: ${describe(name)} cannot be an exposed method name (it must be a non-empty string, not constructor/__proto__/prototype)`);
  }
  return name;
}

/** Records a registration (after `register` checked its arguments). */
export function addRegistration(registration: Registration): void {
  all.push(registration);
}

/**
 * Checks what `register` was given and makes the registration.
 * @param reserved names a typeid may not take (the manager's own members).
 */
export function makeRegistration(
  cls: Function,
  typeid: unknown,
  factory: unknown,
  options: unknown,
  file: string | null,
  reserved: (name: string) => boolean,
): Registration {
  const where = `${cls.name}.register()`;
  if (typeof typeid !== 'string' || !IDENTIFIER.test(typeid)) {
    throw new ValueError(`${where}: the typeid must be a name like 'Maths' (letters, digits, _ or $), not ${describe(typeid)}`);
  }
  if (reserved(typeid)) {
    throw new ValueError(`${where}: '${typeid}' is the name of a member of the manager itself; choose another typeid`);
  }
  if (factory !== undefined && factory !== null && typeof factory !== 'function') {
    throw new ValueError(`${where}: the factory of '${typeid}' must be a class or a function (or nothing, for a typeid the server makes), not ${describe(factory)}`);
  }
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new ValueError(`${where}: options must be an object { exposed?, methodToTypeid?, proxytype?, createMethod? }, not ${describe(options)}`);
  }
  const o = (options ?? {}) as RegisterOptions;
  let exposed: string[] | null = null;
  if (o.exposed !== undefined && o.exposed !== null) {
    if (!Array.isArray(o.exposed)) throw new ValueError(`${where}: exposed must be an array of method names, not ${describe(o.exposed)}`);
    exposed = o.exposed.map((m, i) => checkMethodName(m, `${where} exposed[${i}]`));
  }
  const methodToTypeid: Record<string, string> = Object.create(null);
  if (o.methodToTypeid !== undefined && o.methodToTypeid !== null) {
    if (typeof o.methodToTypeid !== 'object') {
      throw new ValueError(`${where}: methodToTypeid must be an object { method: typeid }, not ${describe(o.methodToTypeid)}`);
    }
    for (const [method, target] of Object.entries(o.methodToTypeid)) {
      checkMethodName(method, `${where} methodToTypeid`);
      if (typeof target !== 'string' || !IDENTIFIER.test(target)) {
        throw new ValueError(`${where}: methodToTypeid.${method} must be a typeid (a name), not ${describe(target)}`);
      }
      methodToTypeid[method] = target;
    }
  }
  let proxytype = 'AutoProxy';
  if (o.proxytype !== undefined && o.proxytype !== null) {
    if (typeof o.proxytype !== 'function' || !o.proxytype.name) {
      throw new ValueError(`${where}: proxytype must be a proxy class (mp.BaseProxy or a subclass), not ${describe(o.proxytype)}`);
    }
    proxytype = o.proxytype.name;
    proxyClasses.set(proxytype, o.proxytype);
  }
  return {
    typeid,
    factory: (factory as Function | undefined) ?? null,
    exposed,
    methodToTypeid,
    proxytype,
    createMethod: o.createMethod !== false,
    cls,
    file,
    builtin: false,
  };
}

/** The typeids of `cls`, its own and inherited (a subclass's own win), by typeid. */
export function registrationsOf(cls: Function): Map<string, Registration> {
  const chain: Function[] = [];
  for (let c: unknown = cls; typeof c === 'function' && c !== Function.prototype; c = Object.getPrototypeOf(c)) chain.unshift(c as Function);
  const out = new Map<string, Registration>();
  for (const c of chain) for (const r of all) if (r.cls === c) out.set(r.typeid, r);
  return out;
}

/** How the server process will find `registration` again. */
export function specOf(registration: Registration): RegistrationSpec {
  return {
    typeid: registration.typeid,
    owner: registration.cls.name,
    file: registration.file,
    builtin: registration.builtin,
    hasFactory: registration.factory !== null,
  };
}

/** The registration `spec` describes, among those made in this isolate (the latest, if made twice). */
export function findRegistration(spec: RegistrationSpec): Registration | undefined {
  for (let i = all.length - 1; i >= 0; i--) {
    const r = all[i]!;
    if (r.typeid === spec.typeid && r.cls.name === spec.owner && r.file === spec.file && r.builtin === spec.builtin) return r;
  }
  return undefined;
}

/**
 * The methods of `obj` clients may call when `exposed` was not given:
 * Python's public methods — function-valued properties, own or inherited
 * (not Object's), whose names do not start with `_`. Getters are never
 * methods (calling them would run code on a read).
 */
export function publicMethods(obj: object): string[] {
  const names = new Set<string>();
  for (let o: object | null = obj; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const name of Object.getOwnPropertyNames(o)) {
      if (name.startsWith('_') || FORBIDDEN_METHODS.has(name)) continue;
      const d = Object.getOwnPropertyDescriptor(o, name);
      if (d && 'value' in d && typeof d.value === 'function') names.add(name);
    }
  }
  return [...names];
}

/**
 * The method `name` of `obj` as a function, found without running any
 * code: own or inherited data properties only (a getter is refused, and so
 * is anything on `Object.prototype`).
 */
export function methodOf(obj: object, name: string): Function | null {
  if (FORBIDDEN_METHODS.has(name)) return null;
  for (let o: object | null = obj; o !== null && o !== Object.prototype && o !== Function.prototype; o = Object.getPrototypeOf(o)) {
    const d = Object.getOwnPropertyDescriptor(o, name);
    if (!d) continue;
    return 'value' in d && typeof d.value === 'function' ? d.value : null;
  }
  return null;
}

/** Calls a factory: a class (or a built-in constructor such as Map) with `new`, a function plainly. */
export function callFactory(factory: Function, args: unknown[]): unknown {
  return isConstructor(factory) ? Reflect.construct(factory, args) : Reflect.apply(factory, undefined, args);
}

function isConstructor(fn: Function): boolean {
  const source = Function.prototype.toString.call(fn);
  if (/^class\b/.test(source)) return true;
  // Built-in constructors (Map, Set, Date…): native code with a prototype of their own.
  return /\{\s*\[native code\]\s*\}\s*$/.test(source) && typeof fn.prototype === 'object' && fn.prototype?.constructor === fn;
}
