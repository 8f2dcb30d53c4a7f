#!/usr/bin/env python3
"""CPython multiprocessing anchors for the multiprocessing-ts benchmarks.

One invocation measures one sample and prints one JSON object on stdout; the
TypeScript harness (bench/run.ts) calls it once per round, interleaved with
its own variants, so both sides see the same machine state.

    python3 mp_anchor.py start --method fork|spawn|forkserver [--reps 20] [--warmup 2]
    python3 mp_anchor.py value [--method fork] [--n 200000] [--procs 2]
    python3 mp_anchor.py values [--cap 1000000]
    python3 mp_anchor.py queue [--payload int|bytes1k|8mb] [--n 200000]
    python3 mp_anchor.py pipe [--n 200000]
    python3 mp_anchor.py pipe-rtt [--rounds 10000] [--warmup 1000]
    python3 mp_anchor.py pool-start [--method fork|spawn] [--reps 5]
    python3 mp_anchor.py pool-map [--n 100000] [--chunksize 1]
    python3 mp_anchor.py manager [--n 20000] [--procs 2]

Standard library only. Everything but the argument handling sits behind the
__main__ guard, because spawn and forkserver children re-import this file.
"""
import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

# CLOCK_MONOTONIC on Linux: the same clock in every process, so a child's
# timestamp can be compared with the parent's.
now = time.perf_counter


def noop():
    pass


def incr_worker(v, n, gate, ready, ends, slot):
    """n x `with v.get_lock(): v.value += 1`, the idiom the Python docs show.

    The lock is looked up once, as the TypeScript children do, so both sides
    time the same thing: lock, read-modify-write, unlock.
    """
    ready.release()
    with gate:  # parked here until the parent opens the gate
        pass
    lock = v.get_lock()
    for _ in range(n):
        with lock:
            v.value += 1
    ends[slot] = now()


def helper_cpu_s():
    """CPU seconds of helpers this interpreter never waits for.

    The forkserver (and the children it forks and reaps) and the resource
    tracker outlive our last join and are not reaped by us, so their CPU
    would show up as *foreign* load in the harness. Reading their
    /proc/<pid>/stat (own + reaped children) just before we exit lets the
    harness count it as ours.
    """
    pids = []
    try:
        from multiprocessing import forkserver
        pids.append(getattr(forkserver._forkserver, "_forkserver_pid", None))
    except Exception:
        pass
    try:
        from multiprocessing import resource_tracker
        pids.append(getattr(resource_tracker._resource_tracker, "_pid", None))
    except Exception:
        pass
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        if not pid:
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        # utime, stime, cutime, cstime are fields 14-17 (fields[0] is field 3)
        total += sum(int(x) for x in fields[11:15]) / tick
    return total


def bench_start(method, reps, warmup):
    ctx = mp.get_context(method)
    times = []
    for i in range(warmup + reps):
        t0 = now()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        dt = now() - t0
        if p.exitcode != 0:
            raise SystemExit(f"noop child exited with {p.exitcode}")
        if i >= warmup:
            times.append(dt * 1e3)
    return {
        "bench": "start",
        "method": method,
        "median_ms": statistics.median(times),
        "samples_ms": [round(t, 4) for t in times],
        "reps": reps,
        "warmup": warmup,
    }


def bench_value(method, n, procs):
    ctx = mp.get_context(method)
    v = ctx.Value("i", 0)
    gate = ctx.Lock()
    ready = ctx.Semaphore(0)
    ends = ctx.RawArray("d", procs)
    gate.acquire()
    ps = [ctx.Process(target=incr_worker, args=(v, n, gate, ready, ends, k)) for k in range(procs)]
    for p in ps:
        p.start()
    for _ in ps:  # every child has started and is about to block on the gate
        ready.acquire()
    t0 = now()
    gate.release()
    for p in ps:
        p.join()
    t1 = now()
    total = v.value
    expected = n * procs
    return {
        "bench": "value",
        "method": method,
        "n": n,
        "procs": procs,
        "elapsed_s": t1 - t0,
        "incr_elapsed_s": max(ends) - t0,
        "total": total,
        "expected": expected,
        "exact": total == expected,
        "exitcodes": [p.exitcode for p in ps],
    }


def bench_values(cap):
    """Value('i') after Value('i') kept alive, until one fails or `cap` exist.

    Each carries a lock (a SemLock), as in the TypeScript variant. On Linux
    CPython stops near vm.max_map_count with an OSError; the figure is the
    mean creation time of those it made.
    """
    values = []
    stopped = None
    t0 = now()
    try:
        for i in range(cap):
            values.append(mp.Value("i", i))
    except OSError as e:
        stopped = f"{type(e).__name__}: {e}"
    elapsed = now() - t0
    n = len(values)
    ok = all(values[i].value == i for i in range(0, n, 997))
    return {
        "bench": "values",
        "n": n,
        "cap": cap,
        "stopped": stopped,
        "elapsed_s": elapsed,
        "us_per_object": elapsed / max(n, 1) * 1e6,
        "exact": ok,
    }


def q_producer(q, n, payload, ready, go):
    ready.set()
    go.wait()
    put = q.put
    if payload is None:
        for i in range(n):
            put(i)
    else:
        for _ in range(n):
            put(payload)


def bench_queue(payload_name, n):
    """A fork child put()s n items into an mp.Queue, the parent get()s them.

    The clock runs from releasing the started producer to the parent's last
    get(), as the anchor suite's group b measures it.
    """
    payload = {"int": None, "bytes1k": b"x" * 1024, "8mb": b"x" * (8 << 20)}[payload_name]
    ctx = mp.get_context("fork")
    q, ready, go = ctx.Queue(), ctx.Event(), ctx.Event()
    p = ctx.Process(target=q_producer, args=(q, n, payload, ready, go))
    p.start()
    ready.wait()
    t0 = now()
    go.set()
    get = q.get
    for _ in range(n):
        get()
    elapsed = now() - t0
    p.join()
    return {"bench": "queue", "payload": payload_name, "n": n, "elapsed_s": elapsed, "exitcode": p.exitcode}


def pipe_sender(conn, n, ready, go):
    ready.set()
    go.wait()
    send = conn.send
    for i in range(n):
        send(i)
    conn.close()


def bench_pipe(n):
    """A fork child send()s n ints over Pipe(duplex=False), the parent recv()s them."""
    ctx = mp.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)
    ready, go = ctx.Event(), ctx.Event()
    p = ctx.Process(target=pipe_sender, args=(writer, n, ready, go))
    p.start()
    writer.close()
    ready.wait()
    t0 = now()
    go.set()
    recv = reader.recv
    for _ in range(n):
        recv()
    elapsed = now() - t0
    p.join()
    return {"bench": "pipe", "n": n, "elapsed_s": elapsed, "exitcode": p.exitcode}


def pipe_echo(conn):
    # A fork child inherits the parent's end too, so it would never see EOF: None ends it.
    while True:
        v = conn.recv()
        if v is None:
            return
        conn.send(v)


def bench_pipe_rtt(rounds, warmup):
    """Round trips of an int to a fork child that echoes; the median, in µs."""
    ctx = mp.get_context("fork")
    mine, theirs = ctx.Pipe()
    p = ctx.Process(target=pipe_echo, args=(theirs,))
    p.start()
    theirs.close()
    times = []
    for i in range(warmup + rounds):
        t0 = now()
        mine.send(i)
        mine.recv()
        if i >= warmup:
            times.append((now() - t0) * 1e6)
    mine.send(None)
    p.join()
    mine.close()
    return {"bench": "pipe-rtt", "rounds": rounds, "median_us": statistics.median(times), "exitcode": p.exitcode}


def ident(x):
    return x


def bench_pool_start(method, reps):
    """Pool(2) construction to the first apply() result, as the anchor suite's f group."""
    ctx = mp.get_context(method)
    times = []
    for _ in range(reps):
        t0 = now()
        pool = ctx.Pool(2)
        pool.apply(noop)
        times.append((now() - t0) * 1e3)
        pool.terminate()
        pool.join()
    return {"bench": "pool-start", "method": method, "median_ms": statistics.median(times), "samples_ms": times}


def bench_pool_map(n, chunksize):
    """Pool(2).map(ident, range(n), chunksize) after a warm-up map, fork workers."""
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        pool.map(ident, range(2_000))
        t0 = now()
        res = pool.map(ident, range(n), chunksize=chunksize)
        elapsed = now() - t0
    if len(res) != n or res[-1] != n - 1:
        raise SystemExit("pool.map returned wrong results")
    return {"bench": "pool-map", "n": n, "chunksize": chunksize, "elapsed_s": elapsed}


def mgr_list_worker(lst, n, barrier):
    barrier.wait()
    app = lst.append
    for i in range(n):
        app(i)


def mgr_dict_worker(d, n, tag, barrier):
    keys = [f"{tag}:{i}" for i in range(n)]
    barrier.wait()
    for i, k in enumerate(keys):
        d[k] = i
    barrier.wait()
    for i, k in enumerate(keys):
        if d[k] != i:
            raise RuntimeError("bad value")
    barrier.wait()


def bench_manager(n, procs):
    """procs fork children x n list.append, then dict sets and gets, on one Manager (ops/s)."""
    ctx = mp.get_context("fork")
    with ctx.Manager() as mgr:
        lst = mgr.list()
        barrier = ctx.Barrier(procs + 1)
        ps = [ctx.Process(target=mgr_list_worker, args=(lst, n, barrier)) for _ in range(procs)]
        for p in ps:
            p.start()
        barrier.wait()
        t0 = now()
        for p in ps:
            p.join()
        t_append = now() - t0
        length = len(lst)
        d = mgr.dict()
        barrier = ctx.Barrier(procs + 1)
        ps = [ctx.Process(target=mgr_dict_worker, args=(d, n, t, barrier)) for t in range(procs)]
        for p in ps:
            p.start()
        barrier.wait()
        t0 = now()
        barrier.wait()
        t1 = now()
        barrier.wait()
        t2 = now()
        for p in ps:
            p.join()
        exact = length == n * procs and all(p.exitcode == 0 for p in ps) and len(d) == n * procs
    ops = n * procs
    return {"bench": "manager", "n": n, "procs": procs, "exact": exact,
            "append_per_s": ops / t_append, "set_per_s": ops / (t1 - t0), "get_per_s": ops / (t2 - t1)}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="bench", required=True)
    s = sub.add_parser("start", help="Process(target=noop) construct + start() + join(), median ms")
    s.add_argument("--method", default="fork", choices=("fork", "spawn", "forkserver"))
    s.add_argument("--reps", type=int, default=20)
    s.add_argument("--warmup", type=int, default=2)
    v = sub.add_parser("value", help="procs x n locked Value increments, released together")
    v.add_argument("--method", default="fork", choices=("fork", "spawn", "forkserver"))
    v.add_argument("--n", type=int, default=200_000)
    v.add_argument("--procs", type=int, default=2)
    vs = sub.add_parser("values", help="Value('i') kept alive until one fails or --cap exist, mean µs each")
    vs.add_argument("--cap", type=int, default=1_000_000)
    qp = sub.add_parser("queue", help="a fork child puts n items into mp.Queue, the parent gets them")
    qp.add_argument("--payload", default="int", choices=("int", "bytes1k", "8mb"))
    qp.add_argument("--n", type=int, default=200_000)
    pp = sub.add_parser("pipe", help="a fork child sends n ints over Pipe(duplex=False), the parent receives them")
    pp.add_argument("--n", type=int, default=200_000)
    pr = sub.add_parser("pipe-rtt", help="round trips of an int to an echoing fork child over Pipe(), median µs")
    pr.add_argument("--rounds", type=int, default=10_000)
    pr.add_argument("--warmup", type=int, default=1_000)
    ps_ = sub.add_parser("pool-start", help="Pool(2) construction to the first apply() result, median ms")
    ps_.add_argument("--method", default="fork", choices=("fork", "spawn", "forkserver"))
    ps_.add_argument("--reps", type=int, default=5)
    pm = sub.add_parser("pool-map", help="Pool(2).map(ident, range(n), chunksize), fork workers")
    pm.add_argument("--n", type=int, default=100_000)
    pm.add_argument("--chunksize", type=int, default=1)
    mg = sub.add_parser("manager", help="procs children x n list.append, dict set and get on one Manager")
    mg.add_argument("--n", type=int, default=20_000)
    mg.add_argument("--procs", type=int, default=2)
    args = ap.parse_args(argv)
    if args.bench == "start":
        out = bench_start(args.method, args.reps, args.warmup)
    elif args.bench == "values":
        out = bench_values(args.cap)
    elif args.bench == "queue":
        out = bench_queue(args.payload, args.n)
    elif args.bench == "pipe":
        out = bench_pipe(args.n)
    elif args.bench == "pipe-rtt":
        out = bench_pipe_rtt(args.rounds, args.warmup)
    elif args.bench == "pool-start":
        out = bench_pool_start(args.method, args.reps)
    elif args.bench == "pool-map":
        out = bench_pool_map(args.n, args.chunksize)
    elif args.bench == "manager":
        out = bench_manager(args.n, args.procs)
    else:
        out = bench_value(args.method, args.n, args.procs)
    out["python"] = sys.version.split()[0]
    out["helper_cpu_s"] = helper_cpu_s()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
