// proc.cc — small process/thread primitives the JS layer cannot reach:
// gettid, threadAlive (tgkill probe) and setParentDeathSignal (prctl).
//
// They exist to make locks robust: a lock word records the owner's pid and
// thread id; a waiter that times out asks threadAlive(pid, tid) whether the
// owner still exists and, if not, may recover the lock. The thread id (not
// only the pid) matters because several worker_threads of one process can
// hold different locks.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "args.h"
#include "bindings.h"

namespace mpts {

namespace {

// Linux thread and process ids are positive and below 2^22 by default
// (pid_max), never above 2^30.
constexpr double kMaxPid = 1073741824.0;

}  // namespace

// gettid() -> the kernel thread id of the calling JS thread.
void GetTid(const Callback& args) {
  args.GetReturnValue().Set(static_cast<int32_t>(syscall(SYS_gettid)));
}

// threadAlive(pid, tid) -> false only when thread `tid` of process `pid`
// certainly does not exist.
void ThreadAlive(const Callback& args) {
  v8::Isolate* isolate = args.GetIsolate();
  int64_t pid, tid;
  if (!IntegerArg(isolate, args[0], "pid", 1, kMaxPid, &pid) ||
      !IntegerArg(isolate, args[1], "tid", 1, kMaxPid, &tid)) {
    return;
  }
  // Signal 0 performs only the existence and permission checks. tgkill (not
  // kill) also verifies that the thread belongs to that thread group, so a
  // recycled tid now living in another process does not count as alive.
  const long rc = syscall(SYS_tgkill, static_cast<pid_t>(pid),
                          static_cast<pid_t>(tid), 0);
  // EPERM means it exists but belongs to someone else; any error other than
  // ESRCH is treated as "alive" so that a lock is never stolen on a guess.
  args.GetReturnValue().Set(!(rc < 0 && errno == ESRCH));
}

// setParentDeathSignal(signal) -> true when prctl accepted it.
void SetParentDeathSignal(const Callback& args) {
  v8::Isolate* isolate = args.GetIsolate();
  int64_t signal;
  // 0 clears the setting; Linux signals go up to SIGRTMAX (64).
  if (!IntegerArg(isolate, args[0], "signal", 0, 64, &signal)) return;
  const int rc = prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(signal));
  args.GetReturnValue().Set(rc == 0);
}

}  // namespace mpts
