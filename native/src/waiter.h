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
// The contract with wakers, and why no wake is lost under it:
//   A wait completes when it is woken OR when its word differs from
//   `expected`. A waker must therefore store a new value into the word
//   before every FUTEX_WAKE, one that no pending waiter still expects (a
//   sequence counter bumped per wake; a lock word that changes owner), and
//   a waiter must re-check its condition after every completion, since
//   completions may be spurious.
//   Under that contract, each FUTEX_WAKE that the kernel charges to one of
//   our entries is accounted for:
//    - The kernel reports only ONE woken index per futex_waitv return (the
//      highest one it found dequeued), although concurrent wakes may have
//      dequeued several of our entries. The others are not lost: their
//      words changed before their wakes, so the sweep completes them.
//    - While the thread rebuilds its vector (between the sweep and the next
//      futex_waitv) none of its words is queued in the kernel, so a wake
//      then finds another waiter or none. The word was changed first, and
//      futex_waitv compares every word with its expected value atomically
//      with queueing it, so the rebuilt vector fails with EAGAIN and the
//      sweep completes that entry.
//    - An entry cancelled (its environment is being torn down) while the
//      thread sleeps on it stays queued in the kernel until the thread
//      leaves futex_waitv. Meanwhile a FUTEX_WAKE(word, 1) from anywhere
//      can pick it instead of a live waiter of that word (in any process),
//      and nobody would act on that wake. The thread cannot tell whether
//      that happened (see the first point), so for every cancelled entry
//      the kernel had, it passes one wake on: FUTEX_WAKE(word, 1) after
//      leaving futex_waitv, while the entry's pin still keeps the word
//      mapped. An unneeded wake only costs its receiver a re-check.
//    - A kWoken completion whose environment is torn down before its JS
//      acts on it has likewise consumed a wake; the sink passes it on the
//      same way (async_wait.cc).
//   A waker that changes a word and changes it back before the waiter
//   thread looks (ABA) can lose the wake of an entry the kernel dequeued but
//   did not report; that is why the contract asks for a fresh value.
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
  // is handed over so the mapping is released on the owner's thread; it
  // keeps `word` valid, so that a sink that cannot deliver a kWoken
  // completion any more can pass its wake on with FutexWakeShared(word, 1).
  virtual void OnWaitComplete(uint64_t id, WaitResult result, uint32_t* word,
                              Pin pin) = 0;

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
// except those a waiter thread may still be sleeping on: that thread, once
// the cancellation has woken it, passes on the wake such an entry may have
// absorbed (see "the contract" above) and then drops the pin itself (a
// SharedArrayBuffer backing store may be released on any thread). Completions
// the sink has already received are its own to deliver or pass on.
void CancelWaits(CompletionSink* sink);

}  // namespace mpts

#endif  // MPTS_NATIVE_WAITER_H_
