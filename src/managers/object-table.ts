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
 *   moves that reference to its own connection.
 * - The sender owns a ticket until it is claimed, and gives it back
 *   (UNTICKET) when its carrier is known never to deliver it: the transfer
 *   failed (a refused `start()`, an argument that cannot travel after the
 *   proxy), or the child whose `args` held it has ended (killed before it
 *   revived them). That child may have claimed it just before it died, on
 *   its own connection, which the server may read after the sender's
 *   UNTICKET: so a withdrawn ticket's reference goes at once but its entry
 *   is kept for `WITHDRAWN_GRACE`, and a CLAIM arriving meanwhile takes it
 *   up as if nothing happened. A handle nobody withdraws (an item never read
 *   from a Queue, whose reader may come hours later) keeps its object until
 *   the server ends.
 * - A CLAIM that overtakes its INCREF (two connections, no order between
 *   them) counts a reference for its receiver at once, if the object is
 *   still held (counted, or withdrawn within `WITHDRAWN_GRACE`), and its
 *   ticket is remembered so that the INCREF, when it comes, counts nothing.
 *   At once, because the INCREF may never come: a child that forwards a
 *   proxy from its args and exits before its client has connected loses
 *   it, and its sender then withdraws the args' ticket. A CLAIM of an object
 *   not held waits for its INCREF instead; a DECREF of the proxy it made
 *   that also comes before the INCREF cancels it (the INCREF then counts
 *   nothing, else the receiver's connection would own a reference its
 *   process gave back already). What waits is bounded in number
 *   (`MAX_PENDING`, the oldest going first) and in time (`PENDING_TTL`): a
 *   CLAIM whose INCREF never comes costs nothing after that; an INCREF
 *   later than that is a ticket nobody claims (its object kept until the
 *   server ends, never freed early).
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

/**
 * How long a withdrawn ticket's entry stays reachable by a CLAIM that the
 * server reads late (its dead receiver's connection read after the
 * sender's): two connections of one machine are never that far apart.
 */
export const WITHDRAWN_GRACE = 30_000;
/** How long a CLAIM waits for its INCREF (the sender may still be connecting), and an orphaned ticket for its INCREF. */
export const PENDING_TTL = 60_000;
/** At most this many of each kind of waiting ticket (a client sending CLAIMs of made-up tickets costs bounded memory); the oldest goes first. */
export const MAX_PENDING = 100_000;

/** A CLAIM that came before its INCREF. */
interface EarlyClaim {
  readonly holder: Holder;
  /** The object id the CLAIM named (a DECREF of that id from the same holder cancels it). */
  readonly id: number;
  readonly until: number;
}

/** A ticket withdrawn by its sender: its reference is gone, its entry kept a while for a late CLAIM. */
interface Withdrawn {
  readonly entry: Entry;
  readonly until: number;
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
  /** Tickets withdrawn (UNTICKET) less than `WITHDRAWN_GRACE` ago. */
  readonly #withdrawn = new Map<string, Withdrawn>();
  /** The same by object id, with how many: an early CLAIM of another ticket of that object takes it up too. */
  readonly #withdrawnIds = new Map<number, { entry: Entry; n: number }>();
  /** CLAIMs that came before their INCREF: ticket → who claimed (in arrival order, so the oldest is first). */
  readonly #early = new Map<string, EarlyClaim>();
  /** The same, per holder and object id: what a DECREF of that holder may cancel, and what goes when it goes. */
  readonly #earlyOf = new Map<Holder, Map<number, Set<string>>>();
  /** Tickets whose INCREF, when it comes, counts nothing (their claim was cancelled or its holder is gone) → until when. */
  readonly #orphaned = new Map<string, number>();
  /** Sweeps what waits past its time, while anything waits. */
  #sweeper: NodeJS.Timeout | null = null;
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

  /** Drops up to `n` of `holder`'s references of `entry` (never more than it holds); returns how many. */
  disown(holder: Holder, entry: Entry, n: number): number {
    const held = holder.owned.get(entry) ?? 0;
    const dropped = Math.min(held, n);
    if (dropped === 0) return 0;
    if (held === dropped) holder.owned.delete(entry);
    else holder.owned.set(entry, held - dropped);
    this.#drop(entry, dropped);
    return dropped;
  }

  /**
   * DECREF: `holder`'s process dropped `n` proxies of object `id`. A proxy
   * made from a handle whose CLAIM still waits for its INCREF holds no
   * counted reference yet: its DECREF cancels that claim instead.
   */
  decref(holder: Holder, id: number, n: number): void {
    const entry = this.#counted.get(id);
    let rest = n - (entry ? this.disown(holder, entry, n) : 0);
    const waiting = rest > 0 ? this.#earlyOf.get(holder)?.get(id) : undefined;
    if (!waiting) return;
    for (const ticket of waiting) {
      if (rest-- === 0) break;
      this.#forgetEarly(ticket);
      this.#orphan(ticket);
    }
  }

  /** A holder is gone: every reference it held goes. */
  release(holder: Holder): void {
    for (const [entry, n] of holder.owned) this.#drop(entry, n);
    holder.owned.clear();
    const waiting = this.#earlyOf.get(holder);
    if (!waiting) return;
    for (const tickets of waiting.values()) {
      for (const ticket of tickets) {
        this.#early.delete(ticket);
        this.#orphan(ticket);
      }
    }
    this.#earlyOf.delete(holder);
  }

  /** INCREF: a handle of object `id` left a process under `ticket`. */
  incref(id: number, ticket: string): void {
    const entry = this.#counted.get(id);
    if (entry) {
      this.#ticket(entry, ticket);
      return;
    }
    // A stale handle (its object is freed): a CLAIM that waits for it waits for nothing.
    this.#forgetEarly(ticket);
    this.#orphaned.delete(ticket);
  }

  #ticket(entry: Entry, ticket: string): void {
    // Its claim was cancelled, or claimed by a process that ended before this INCREF came: that reference was given back with it.
    if (this.#orphaned.delete(ticket)) return;
    const early = this.#early.get(ticket);
    if (early) {
      this.#forgetEarly(ticket);
      this.own(early.holder, entry);
      return;
    }
    if (this.#tickets.has(ticket) || this.#withdrawn.has(ticket)) return; // a repeated ticket counts once
    this.#tickets.set(ticket, entry);
    this.#add(entry, 1);
  }

  /** CLAIM: the handle under `ticket` was revived by `holder`'s process. */
  claim(holder: Holder, id: number, ticket: string): void {
    const entry = this.#tickets.get(ticket);
    if (entry) {
      this.#tickets.delete(ticket);
      // The ticket's reference becomes the holder's: the total stays.
      holder.owned.set(entry, (holder.owned.get(entry) ?? 0) + 1);
      return;
    }
    const withdrawn = this.#withdrawn.get(ticket);
    if (withdrawn) {
      // Its receiver claimed it before it ended, and the sender's UNTICKET was read first.
      this.#unwithdraw(ticket);
      this.own(holder, withdrawn.entry);
      return;
    }
    if (this.#early.has(ticket) || this.#orphaned.has(ticket)) return; // a repeated CLAIM counts once
    const held = this.#counted.get(id) ?? this.#withdrawnIds.get(id)?.entry;
    if (held) {
      // Counted now, its INCREF (if it ever comes) counting nothing: a sender that exited before it
      // connected never sends it, and the object must not be freed under this receiver meanwhile.
      this.own(holder, held);
      this.#orphan(ticket);
      return;
    }
    this.#make(this.#early, ticket, { holder, id, until: Date.now() + PENDING_TTL }, (t) => this.#forgetEarly(t));
    let ids = this.#earlyOf.get(holder);
    if (!ids) this.#earlyOf.set(holder, (ids = new Map()));
    let tickets = ids.get(id);
    if (!tickets) ids.set(id, (tickets = new Set()));
    tickets.add(ticket);
  }

  /**
   * UNTICKET: the sender of the handle under `ticket` knows it will never
   * be claimed (its transfer failed, or its receiver ended). Its reference
   * goes now; a CLAIM read within `WITHDRAWN_GRACE` still takes it up.
   * A ticket claimed already is not the sender's any more: nothing happens.
   */
  withdraw(ticket: string): void {
    const entry = this.#tickets.get(ticket);
    if (!entry) return;
    this.#tickets.delete(ticket);
    this.#make(this.#withdrawn, ticket, { entry, until: Date.now() + WITHDRAWN_GRACE }, (t) => this.#unwithdraw(t));
    const ids = this.#withdrawnIds.get(entry.id);
    if (ids) ids.n++;
    else this.#withdrawnIds.set(entry.id, { entry, n: 1 });
    this.#drop(entry, 1);
  }

  #unwithdraw(ticket: string): void {
    const withdrawn = this.#withdrawn.get(ticket);
    if (!withdrawn) return;
    this.#withdrawn.delete(ticket);
    const ids = this.#withdrawnIds.get(withdrawn.entry.id);
    if (ids && --ids.n === 0) this.#withdrawnIds.delete(withdrawn.entry.id);
  }

  /** Counts for tests and debugging. */
  info(): { objects: number; tickets: number; waiting: number } {
    return { objects: this.#counted.size, tickets: this.#tickets.size, waiting: this.#early.size + this.#orphaned.size + this.#withdrawn.size };
  }

  /** Forgets everything (the server ended). */
  clear(): void {
    this.#counted.clear();
    this.#tickets.clear();
    this.#withdrawn.clear();
    this.#withdrawnIds.clear();
    this.#early.clear();
    this.#earlyOf.clear();
    this.#orphaned.clear();
    if (this.#sweeper) clearTimeout(this.#sweeper);
    this.#sweeper = null;
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

  #orphan(ticket: string): void {
    this.#make(this.#orphaned, ticket, Date.now() + PENDING_TTL, (t) => this.#orphaned.delete(t));
  }

  #forgetEarly(ticket: string): void {
    const early = this.#early.get(ticket);
    if (!early) return;
    this.#early.delete(ticket);
    const ids = this.#earlyOf.get(early.holder);
    const tickets = ids?.get(early.id);
    if (!ids || !tickets) return;
    tickets.delete(ticket);
    if (tickets.size > 0) return;
    ids.delete(early.id);
    if (ids.size === 0) this.#earlyOf.delete(early.holder);
  }

  /** Adds a waiting ticket to `map`, the oldest going when the map is full (`forget` removes one). */
  #make<V>(map: Map<string, V>, ticket: string, value: V, forget: (ticket: string) => void): void {
    if (map.size >= MAX_PENDING) forget(map.keys().next().value!);
    map.set(ticket, value);
    this.#sweeper ??= setTimeout(() => this.#sweep(), SWEEP_EVERY).unref();
  }

  /** Drops what waited past its time: each map is in arrival order, and each kind waits a fixed time, so the expired ones come first. */
  #sweep(): void {
    this.#sweeper = null;
    const now = Date.now();
    for (const [ticket, { until }] of this.#withdrawn) {
      if (until > now) break;
      this.#unwithdraw(ticket);
    }
    for (const [ticket, { until }] of this.#early) {
      if (until > now) break;
      this.#forgetEarly(ticket);
    }
    for (const [ticket, until] of this.#orphaned) {
      if (until > now) break;
      this.#orphaned.delete(ticket);
    }
    if (this.#withdrawn.size + this.#early.size + this.#orphaned.size > 0) this.#sweeper = setTimeout(() => this.#sweep(), SWEEP_EVERY).unref();
  }
}

/** How often waiting tickets are looked at for expiry. */
const SWEEP_EVERY = 5_000;
