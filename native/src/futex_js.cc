// futex_js.cc — the synchronous futex bindings: futexWait and futexWake.
//
// futexWait blocks the calling JS thread (like Atomics.wait) and is meant for
// worker threads and for processes that have nothing else to do; the event
// loop friendly variant is futexWaitAsync (async_wait.cc).
//
// These operate on *shared* futexes so that a wake from any process mapping
// the same segment reaches the waiter. They do not interoperate with
// Atomics.wait/Atomics.notify, which V8 implements with its own in-process
// wait lists rather than futexes on the word itself.
#include <cmath>

#include "args.h"
#include "bindings.h"
#include "futex.h"

namespace mpts {

// futexWait(sab, byteOffset, expected, timeoutMs) -> 0 | 1 | 2
void FutexWait(const Callback& args) {
  v8::Isolate* isolate = args.GetIsolate();
  uint32_t* word = FutexWordArg(isolate, args[0], args[1]);
  if (word == nullptr) return;
  uint32_t expected;
  double timeout_ms;
  if (!WordValueArg(isolate, args[2], "expected", &expected) ||
      !TimeoutArg(isolate, args[3], &timeout_ms)) {
    return;
  }
  WaitResult result;
  if (timeout_ms <= 0) {
    // "Check only": never enter the kernel, never block.
    result = LoadWord(word) == expected ? kTimedOut : kNotEqual;
  } else {
    // The SharedArrayBuffer stays reachable from `args` for the whole call,
    // so its mapping cannot disappear while we sleep on it.
    result = FutexWaitShared(word, expected, DeadlineAfterMs(timeout_ms));
  }
  args.GetReturnValue().Set(static_cast<int32_t>(result));
}

// futexWake(sab, byteOffset, count) -> number of waiters woken
void FutexWake(const Callback& args) {
  v8::Isolate* isolate = args.GetIsolate();
  uint32_t* word = FutexWordArg(isolate, args[0], args[1]);
  if (word == nullptr) return;
  int count;
  if (!WakeCountArg(isolate, args[2], &count)) return;
  const int woken = FutexWakeShared(word, count);
  // FUTEX_WAKE on a validated, mapped, aligned word cannot fail.
  args.GetReturnValue().Set(woken < 0 ? 0 : woken);
}

}  // namespace mpts
