// waiter.h — the process-wide pool of futex_waitv waiter threads behind
// futexWaitAsync. Contains no V8 handles and knows nothing about isolates.
//
// Why a dedicated thread instead of the libuv threadpool: an async wait can
// last forever, and parking one threadpool thread per wait would starve fs,
// dns and crypto work (the pool has 4 threads by default). futex_waitv (Linux
// >= 5.16) lets a single thread sleep on up to 128 futex words at once, so
// one waiter thread serves 127 pending waits plus its own control word, and
// the pool starts another thread only when more waits are pending than that.
//
// Protocol:
//  * AddWait appends an entry to a waiter with room, bumps that waiter's
//    private control word and FUTEX_WAKEs it (only if it is actually asleep),
//    making the thread rebuild its futex_waitv vector.
//  * When futex_waitv returns, the thread completes, under the pool lock:
//      - the entry the kernel reported as woken               -> kWoken
//      - every entry whose word no longer equals `expected`   -> kWoken
//      - every entry whose deadline has passed                -> kTimedOut
//    and leaves the rest pending. A completion is handed to the entry's
//    CompletionSink (one per JS environment), which queues it for its own
//    thread.
//  * Every entry pins the SharedArrayBuffer's backing store, so a segment
//    stays mapped while the kernel may still be looking at it (a cancelled
//    entry's pin is kept until its thread has left futex_waitv).
//
// Threads are started lazily and never exit: they cost one sleeping thread
// each, and keeping them makes the "may the thread still touch this?"
// question trivial during process teardown.
#ifndef MPTS_NATIVE_WAITER_H_
#define MPTS_NATIVE_WAITER_H_

#include <cstdint>
#include <memory>

#include "futex.h"

namespace v8 {
class BackingStore;
}  // namespace v8

namespace mpts {

// Keeps a segment mapped while a wait on one of its words is pending.
using Pin = std::shared_ptr<v8::BackingStore>;

// Receives completions for the waits one JS environment registered.
class CompletionSink {
 public:
  // Runs on a waiter thread with the pool lock held: it must only queue the
  // completion and signal its owner, never call back into the pool. `pin`
  // is handed over so the mapping is released on the owner's thread.
  virtual void OnWaitComplete(uint64_t id, WaitResult result, Pin pin) = 0;

 protected:
  ~CompletionSink() = default;
};

struct WaitRequest {
  uint32_t* word;       // inside the pinned backing store, 4-byte aligned
  uint32_t expected;    // raw 32-bit pattern
  int64_t deadline_ns;  // absolute CLOCK_MONOTONIC, or kNoDeadline
  Pin pin;
  CompletionSink* sink;
};

// Registers a wait. Returns its id (> 0, unique for the life of the process)
// or 0 with *err set: ENOSYS without futex_waitv, or a pthread_create error.
// The completion for the id is always delivered through request.sink.
uint64_t AddWait(WaitRequest request, int* err);

// Forgets every pending wait registered by `sink` without completing it.
// When this returns, no waiter thread will ever call `sink` again, so the
// caller may destroy it. The entries' pins are dropped on the calling thread,
// except those a waiter thread may still be sleeping on: that thread drops
// them itself right after the cancellation has woken it (a SharedArrayBuffer
// backing store may be released on any thread).
void CancelWaits(CompletionSink* sink);

}  // namespace mpts

#endif  // MPTS_NATIVE_WAITER_H_
