// futex.h — thin, V8-free wrappers around the Linux futex system calls.
//
// Everything in this library that blocks on shared memory goes through these
// few functions, so the subtle bits live in one place:
//
//  * Shared (cross-process) waits never use FUTEX_PRIVATE_FLAG / FUTEX2_PRIVATE:
//    a private futex is keyed by (mm, address) and would never be woken by
//    another process mapping the same file at a different address.
//  * Deadlines are absolute CLOCK_MONOTONIC nanosecond counts. A wait that is
//    interrupted (EINTR) is retried with the *same* deadline, so signals never
//    stretch a timeout, and wall-clock jumps never shorten or extend one.
//  * kNoDeadline means "wait forever".
#ifndef MPTS_NATIVE_FUTEX_H_
#define MPTS_NATIVE_FUTEX_H_

#include <linux/futex.h>

#include <cstdint>

// Older UAPI headers (e.g. Linux 6.1's, as shipped by Debian 12) declare
// struct futex_waitv but predate the FUTEX2_* flag names; the values are ABI.
#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 0x02  // called FUTEX_32 in those headers
#endif
#ifndef FUTEX2_PRIVATE
#define FUTEX2_PRIVATE FUTEX_PRIVATE_FLAG  // 128
#endif

namespace mpts {

// Result codes shared by futexWait and futexWaitAsync (also the JS values).
enum WaitResult : int {
  kWoken = 0,     // woken by a futexWake (or the value changed while waiting)
  kNotEqual = 1,  // the word did not hold the expected value to begin with
  kTimedOut = 2,  // the deadline passed
};

constexpr int64_t kNoDeadline = INT64_MAX;

// Current CLOCK_MONOTONIC time in nanoseconds.
int64_t MonotonicNowNs();

// Absolute deadline `ms` milliseconds from now. NaN, +Infinity and values too
// large to represent map to kNoDeadline. Callers handle ms <= 0 themselves
// ("check only"), so this is only called with a positive ms.
int64_t DeadlineAfterMs(double ms);

// Atomically reads a futex word (sequentially consistent, like Atomics.load).
inline uint32_t LoadWord(const uint32_t* word) {
  return __atomic_load_n(word, __ATOMIC_SEQ_CST);
}

// Blocks while *word == expected, until woken or until deadline_ns.
// Uses FUTEX_WAIT_BITSET (shared) with an absolute monotonic deadline.
// Spurious wake-ups are reported as kWoken, as with any futex: callers are
// expected to re-check their condition.
WaitResult FutexWaitShared(uint32_t* word, uint32_t expected,
                           int64_t deadline_ns);

// Wakes up to `count` waiters (in any process) blocked on `word`.
// Returns the number woken, or -errno.
int FutexWakeShared(uint32_t* word, int count);

// Same, for a word that is only ever waited on inside this process.
int FutexWakePrivate(uint32_t* word, int count);

// futex_waitv(2): waits on up to FUTEX_WAITV_MAX words at once. Returns the
// index of a woken entry, or -1 with errno set (ETIMEDOUT, EAGAIN when some
// word no longer holds its expected value, EINTR, ...).
long FutexWaitv(struct futex_waitv* waiters, unsigned count,
                int64_t deadline_ns);

// True when the running kernel implements futex_waitv (Linux >= 5.16).
bool FutexWaitvSupported();

}  // namespace mpts

#endif  // MPTS_NATIVE_FUTEX_H_
