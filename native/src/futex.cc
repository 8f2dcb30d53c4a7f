// futex.cc — implementation of the raw futex wrappers declared in futex.h.
//
// glibc offers no wrappers for futex(2) or futex_waitv(2), so these go through
// syscall(2). No function here touches V8; they are shared by the synchronous
// JS bindings (futex_js.cc) and the background waiter threads (waiter.cc).
#include "futex.h"

#include <linux/time_types.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cmath>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449  // x86-64/generic number; added in Linux 5.16
#endif

namespace mpts {

namespace {

constexpr int64_t kNsPerSec = 1000000000;

timespec ToTimespec(int64_t ns) {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(ns / kNsPerSec);
  ts.tv_nsec = static_cast<long>(ns % kNsPerSec);
  return ts;
}

}  // namespace

int64_t MonotonicNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

int64_t DeadlineAfterMs(double ms) {
  const int64_t now = MonotonicNowNs();
  // Nanoseconds left before the deadline would reach kNoDeadline (about
  // 292 years minus the uptime). A longer timeout, NaN or Infinity means
  // forever. The test is done in double so that nothing out of range is
  // ever converted to int64_t (undefined behaviour): `room` as a double is
  // within half an ulp (512 ns at this magnitude) of the exact value, so a
  // double `ns` below it is at least one ulp (1024 ns) smaller, hence below
  // the exact value too, and the sum below cannot overflow.
  const double room = static_cast<double>(kNoDeadline - now);
  const double ns = ms * 1e6;
  if (!(ns < room)) return kNoDeadline;
  return now + static_cast<int64_t>(ns);
}

WaitResult FutexWaitShared(uint32_t* word, uint32_t expected,
                           int64_t deadline_ns) {
  timespec deadline;
  timespec* timeout = nullptr;
  if (deadline_ns != kNoDeadline) {
    deadline = ToTimespec(deadline_ns);
    timeout = &deadline;
  }
  for (;;) {
    // FUTEX_WAIT_BITSET (unlike FUTEX_WAIT) takes an *absolute* timeout,
    // measured on CLOCK_MONOTONIC unless FUTEX_CLOCK_REALTIME is given; this
    // is what lets an EINTR retry reuse the original deadline unchanged.
    long rc = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, timeout,
                      nullptr, FUTEX_BITSET_MATCH_ANY);
    if (rc == 0) return kWoken;
    switch (errno) {
      case EINTR:
        continue;
      case EAGAIN:
        return kNotEqual;
      case ETIMEDOUT:
        return kTimedOut;
      default:
        // EFAULT/EINVAL cannot happen for a validated, mapped, aligned word;
        // report a (spurious) wake-up rather than spin or abort.
        return kWoken;
    }
  }
}

int FutexWakeShared(uint32_t* word, int count) {
  long rc = syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
  return rc < 0 ? -errno : static_cast<int>(rc);
}

int FutexWakePrivate(uint32_t* word, int count) {
  long rc = syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, count, nullptr,
                    nullptr, 0);
  return rc < 0 ? -errno : static_cast<int>(rc);
}

long FutexWaitv(struct futex_waitv* waiters, unsigned count,
                int64_t deadline_ns) {
  __kernel_timespec deadline;
  __kernel_timespec* timeout = nullptr;
  if (deadline_ns != kNoDeadline) {
    deadline.tv_sec = deadline_ns / kNsPerSec;
    deadline.tv_nsec = deadline_ns % kNsPerSec;
    timeout = &deadline;
  }
  // The timeout of futex_waitv is always absolute, on the clock given last.
  return syscall(SYS_futex_waitv, waiters, count, 0, timeout, CLOCK_MONOTONIC);
}

bool FutexWaitvSupported() {
  // An empty vector is rejected with EINVAL by kernels that know the call and
  // with ENOSYS by those that do not; nothing ever blocks.
  long rc = syscall(SYS_futex_waitv, nullptr, 0, 0, nullptr, CLOCK_MONOTONIC);
  return !(rc < 0 && errno == ENOSYS);
}

}  // namespace mpts
