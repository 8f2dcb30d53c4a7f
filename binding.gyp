# Build description of the native addon `mpts_native` (build/Release/mpts_native.node).
#
# The addon is written against node.h/v8.h rather than N-API only, because
# N-API in Node 20 cannot wrap externally owned memory (our mmap'ed segments)
# in a SharedArrayBuffer. It is Linux-only: it relies on futex(2),
# futex_waitv(2) (Linux >= 5.16), tgkill(2) and prctl(2).
{
  "targets": [
    {
      "target_name": "mpts_native",
      "sources": [
        "native/src/addon.cc",
        "native/src/args.cc",
        "native/src/async_wait.cc",
        "native/src/children.cc",
        "native/src/context.cc",
        "native/src/errors.cc",
        "native/src/futex.cc",
        "native/src/futex_js.cc",
        "native/src/net.cc",
        "native/src/proc.cc",
        "native/src/refcount.cc",
        "native/src/segment.cc",
        "native/src/spawn.cc",
        "native/src/waiter.cc"
      ],
      # Node's common.gypi already adds -std=gnu++17, -fno-exceptions and
      # -fno-rtti; the code needs neither exceptions nor RTTI. Release builds
      # default to -O3 there; -O2 is plenty for code that is mostly syscalls.
      "cflags!": [ "-O3" ],
      "cflags": [ "-O2", "-fvisibility=hidden" ],
      "cflags_cc": [ "-std=gnu++17" ],
      # Never unloaded. Node dlcloses an addon when the last environment that
      # loaded it ends; a worker thread that loaded it alone would then run
      # V8's teardown of its SharedArrayBuffers, whose deleters (munmap) are
      # code of this library, after the library was gone (SIGSEGV in
      # ArrayBufferSweeper::ReleaseAll), and the waiter threads that serve
      # futexWaitAsync, which never exit, would run unmapped code too.
      "ldflags": [ "-Wl,-z,nodelete" ]
    }
  ]
}
