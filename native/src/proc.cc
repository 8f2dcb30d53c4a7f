// proc.cc — small process/thread primitives the JS layer cannot reach:
// gettid and setParentDeathSignal (prctl).
//
// gettid makes locks robust: a lock word records the holder's thread id (not
// only the pid, because several worker_threads of one process can hold
// different locks), and a waiter that times out checks with kill(tid, 0),
// which JavaScript can do itself, whether the holder still exists.
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "args.h"
#include "bindings.h"

namespace mpts {

// gettid() -> the kernel thread id of the calling JS thread.
void GetTid(const Callback& args) {
  args.GetReturnValue().Set(static_cast<int32_t>(syscall(SYS_gettid)));
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
