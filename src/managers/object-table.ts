/**
 * The server's objects and who needs them.
 *
 * The rule (the one the docs state): **every proxy holds one reference, and
 * so does every proxy handle in flight.**
 *
 * - A reference of a proxy is counted for the connection of its process
 *   (`Session.owned`): when a proxy is collected its process sends DECREF,
 *   and when a connection ends (its process exited or was killed) all its
 *   references go at once. So a crashed client leaks nothing.
 * - A handle in flight (a proxy sent to a child in `args`, through a Queue or
 *   a Pipe) holds a *ticket*: the sender's [SHARED]() sends INCREF(ticket)
 *   on its own connection before anything else it sends later, in
 *   particular before the DECREF of its own proxy, so the object cannot be
 *   freed between the send and the receiver's arrival however soon the
 *   sender drops its copy or exits. The receiver sends CLAIM(ticket), which
 *   moves that reference to its own connection. A CLAIM that overtakes its
 *   INCREF (two connections, no order between them) waits for it here. A
 *   handle never revived (a message never received) keeps its object until
 *   the server ends, as a segment handle in flight keeps its segment.
 * - A proxy stored inside another object (a list item, a dict value) is a
 *   `Ref` there, which holds the object itself: an object with no counted
 *   reference left is out of the table (no client can name it) but stays
 *   alive for as long as something stored refers to it, which the server's
 *   own garbage collector decides. Reading a `Ref` hands out a new counted
 *   reference, which puts it back in the table under its id.
 */

import { crypto } from '../builtins.js';

/** How a registered type's objects are served. */
export interface TypeInfo {
  readonly typeid: string;
  /** Method names callers may call; null: the object's public methods, read when it is made. */
  readonly exposed: readonly string[] | null;
  /** Methods whose results are returned as proxies (of that typeid) rather than copies. */
  readonly methodToTypeid: Readonly<Record<string, string>>;
  /** The proxy class name clients build (a built-in one's, or 'AutoProxy'). */
  readonly proxytype: string;
}

/** One object the server holds for its clients. */
export class Entry {
  /** References counted (proxies and handles in flight); 0 = only stored `Ref`s keep it. */
  refs = 0;

  constructor(
    readonly id: number,
    readonly obj: object,
    readonly typeid: string,
    readonly exposed: ReadonlySet<string>,
    readonly methodToTypeid: Readonly<Record<string, string>>,
    readonly proxytype: string,
  ) {}
}

/** A proxy stored inside a server object: it holds the object itself. */
export class Ref {
  constructor(readonly entry: Entry) {}
}

/** Who holds counted references: a client's connection. */
export interface Holder {
  readonly closed: boolean;
  /** This holder's count of `entry`'s references, changed by the table only. */
  readonly owned: Map<Entry, number>;
}

export class ObjectTable {
  /**
   * Entries with counted references: the only ones a client can name (a
   * client names an object through a proxy, which holds a reference). An
   * entry kept only by stored `Ref`s is reached through them.
   */
  readonly #counted = new Map<number, Entry>();
  /** Per object, its entry per typeid: served under two typeids, an object has two (each with its own `exposed`). */
  readonly #byObject = new WeakMap<object, Map<string, Entry>>();
  /** Handles in flight: ticket → entry (one counted reference each). */
  readonly #tickets = new Map<string, Entry>();
  /** CLAIMs that came before their INCREF: ticket → who claimed. */
  readonly #early = new Map<string, Holder>();
  /** Tickets claimed early by a holder that is gone since: their INCREF, when it comes, counts nothing. */
  readonly #orphaned = new Set<string>();
  /** Ids start at random, so an id of an earlier server at the same address names nothing here. */
  #nextId = crypto().randomInt(1, 2 ** 47);

  /**
   * The entry for `obj` as `type`, made on first sight: an object has one id
   * per typeid it is served as (Python's `id(obj)`, but a second typeid
   * with a narrower `exposed` must not see the first one's methods).
   */
  entryFor(obj: object, type: TypeInfo, exposed: readonly string[]): Entry {
    let byType = this.#byObject.get(obj);
    if (!byType) this.#byObject.set(obj, (byType = new Map()));
    const known = byType.get(type.typeid);
    if (known) return known;
    const entry = new Entry(this.#nextId++, obj, type.typeid, new Set(exposed), type.methodToTypeid, type.proxytype);
    byType.set(type.typeid, entry);
    return entry;
  }

  /** The entry of `id` while some proxy or handle holds it; undefined once none does (it is freed, or only stored). */
  get(id: number): Entry | undefined {
    return this.#counted.get(id);
  }

  /** Counts a reference of `entry` for `holder` (a proxy made for that client). */
  own(holder: Holder, entry: Entry, n = 1): void {
    holder.owned.set(entry, (holder.owned.get(entry) ?? 0) + n);
    this.#add(entry, n);
  }

  /** Drops up to `n` of `holder`'s references of `entry` (never more than it holds). */
  disown(holder: Holder, entry: Entry, n: number): void {
    const held = holder.owned.get(entry) ?? 0;
    const dropped = Math.min(held, n);
    if (dropped === 0) return;
    if (held === dropped) holder.owned.delete(entry);
    else holder.owned.set(entry, held - dropped);
    this.#drop(entry, dropped);
  }

  /** A holder is gone: every reference it held goes. */
  release(holder: Holder): void {
    for (const [entry, n] of holder.owned) this.#drop(entry, n);
    holder.owned.clear();
    for (const [ticket, who] of this.#early) {
      if (who !== holder) continue;
      this.#early.delete(ticket);
      this.#orphaned.add(ticket);
    }
  }

  /** INCREF: a handle of `entry` left a process under `ticket`. */
  ticket(entry: Entry, ticket: string): void {
    // Claimed by a process that ended before this INCREF came: that reference was given back with it.
    if (this.#orphaned.delete(ticket)) return;
    const early = this.#early.get(ticket);
    if (early) {
      this.#early.delete(ticket);
      if (!early.closed) this.own(early, entry);
      return;
    }
    if (this.#tickets.has(ticket)) return; // a repeated ticket counts once
    this.#tickets.set(ticket, entry);
    this.#add(entry, 1);
  }

  /** CLAIM: the handle under `ticket` was revived by `holder`'s process. */
  claim(holder: Holder, ticket: string): void {
    const entry = this.#tickets.get(ticket);
    if (!entry) {
      this.#early.set(ticket, holder);
      return;
    }
    this.#tickets.delete(ticket);
    // The ticket's reference becomes the holder's: the total stays.
    holder.owned.set(entry, (holder.owned.get(entry) ?? 0) + 1);
  }

  /** Counts for tests and debugging. */
  info(): { objects: number; tickets: number } {
    return { objects: this.#counted.size, tickets: this.#tickets.size };
  }

  /** Forgets everything (the server ended). */
  clear(): void {
    this.#counted.clear();
    this.#tickets.clear();
    this.#early.clear();
    this.#orphaned.clear();
  }

  #add(entry: Entry, n: number): void {
    if (entry.refs === 0) this.#counted.set(entry.id, entry);
    entry.refs += n;
  }

  #drop(entry: Entry, n: number): void {
    entry.refs = Math.max(0, entry.refs - n);
    // Uncounted: it lives on only while a stored Ref holds it.
    if (entry.refs === 0) this.#counted.delete(entry.id);
  }
}
