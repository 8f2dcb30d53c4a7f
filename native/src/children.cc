// children.cc — watchChild(pid) / unwatchChild(pid): the children a worker
// thread started are reaped once the thread is gone, not left as zombies.
//
// Why: libuv reaps a child through the process handle of the loop that
// spawned it. A worker thread's loop ends with the thread, and the handles
// of the children it started (a pool's or a manager's processes, its tree's
// reaper) with it. Those children end too (their parent-death signal
// follows the thread that forked them; the reaper sees its pipe close), but
// nobody waits for them: each stayed a zombie of the process until the
// process exited, so a server that ran such threads ran out of pids.
//
// How: a thread registers each child it starts right after spawning it
// (watchChild), as a pidfd. The child cannot have been reaped before that,
// since only this thread's loop reaps it, and a pidfd names that process and
// no later one of the same pid. The thread drops it when its loop has seen
// the exit (unwatchChild). What is still registered when the environment is
// torn down goes to one process-wide thread, which polls the pidfds (one is
// readable once its process has exited) and reaps each with
// waitid(P_PIDFD); one libuv had reaped already (its exit never reached JS)
// answers ECHILD and is just closed. The main thread's children need none of
// this: its environment ends with the process.
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <node.h>
#include <unordered_map>
#include <vector>

#include "args.h"
#include "bindings.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434  // x86-64/generic number; added in Linux 5.3
#endif
#ifndef P_PIDFD
#define P_PIDFD 3  // Linux 5.4
#endif

namespace mpts {

namespace {

// The pidfds of children whose thread has ended, and the thread that reaps
// them. Intentionally leaked, as the waiter threads are (waiter.cc): the
// thread never exits and may run while static destructors do.
struct Orphans {
  std::mutex mu;
  std::vector<int> pidfds;  // guarded by mu
  int wake = -1;            // eventfd: new pidfds to watch
  bool started = false;     // guarded by mu
};

Orphans& TheOrphans() {
  static Orphans* orphans = new Orphans();
  return *orphans;
}

// How often a child that has exited but cannot be reaped yet (a tracer
// holds it) is tried again: its pidfd stays readable, so polling it would spin.
constexpr int kRetryMs = 100;

void* ReapOrphans(void* arg) {
  Orphans& o = *static_cast<Orphans*>(arg);
  std::vector<struct pollfd> fds;
  std::vector<int> ready;
  std::vector<int> held;  // exited, not reapable yet: not polled, retried
  for (;;) {
    fds.clear();
    fds.push_back({o.wake, POLLIN, 0});
    {
      std::lock_guard<std::mutex> lock(o.mu);
      for (int fd : o.pidfds) {
        if (std::find(held.begin(), held.end(), fd) == held.end()) {
          fds.push_back({fd, POLLIN, 0});
        }
      }
    }
    if (poll(fds.data(), fds.size(), held.empty() ? -1 : kRetryMs) < 0) {
      continue;  // EINTR
    }
    if (fds[0].revents & POLLIN) {
      uint64_t count;
      if (read(o.wake, &count, sizeof(count)) < 0) {
        // Nothing to drain: the next poll tells.
      }
    }
    ready.swap(held);
    held.clear();
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents != 0) ready.push_back(fds[i].fd);
    }
    std::lock_guard<std::mutex> lock(o.mu);
    for (int fd : ready) {
      siginfo_t info = {};
      const int rc = waitid(static_cast<idtype_t>(P_PIDFD),
                            static_cast<id_t>(fd), &info, WEXITED | WNOHANG);
      // Not reapable yet (exited, but a tracer holds it): later. Reaped
      // now, or already (ECHILD), or never (any other error): done with it.
      if (rc == 0 && info.si_pid == 0) {
        held.push_back(fd);
        continue;
      }
      close(fd);
      o.pidfds.erase(std::find(o.pidfds.begin(), o.pidfds.end(), fd));
    }
    ready.clear();
  }
  return nullptr;
}

// Hands `pidfds` to the reaping thread, starting it on first use. Where it
// cannot start, the pidfds are closed: the children stay zombies, as before.
void Orphan(const std::vector<int>& pidfds) {
  if (pidfds.empty()) return;
  Orphans& o = TheOrphans();
  std::lock_guard<std::mutex> lock(o.mu);
  if (!o.started) {
    if (o.wake < 0) o.wake = eventfd(0, EFD_CLOEXEC);
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 128 * 1024);
    // Signals stay with Node's own threads (see waiter.cc).
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    const bool ok =
        o.wake >= 0 && pthread_create(&thread, &attr, ReapOrphans, &o) == 0;
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    pthread_attr_destroy(&attr);
    if (!ok) {
      for (int fd : pidfds) close(fd);
      return;
    }
    pthread_setname_np(thread, "mpts-reap");
    o.started = true;
  }
  o.pidfds.insert(o.pidfds.end(), pidfds.begin(), pidfds.end());
  const uint64_t one = 1;
  if (write(o.wake, &one, sizeof(one)) < 0) {
    // The counter cannot overflow in practice; the thread polls again anyway.
  }
}

}  // namespace

// The children one environment watches: pid -> pidfd. Touched on its JS
// thread only, and by its cleanup hook, which runs on that thread too.
class EnvChildren {
 public:
  static void OnCleanup(void* arg) {
    auto* self = static_cast<EnvChildren*>(arg);
    std::vector<int> left;
    for (const auto& entry : self->pidfds_) left.push_back(entry.second);
    Orphan(left);
    delete self;
  }
  std::unordered_map<int32_t, int> pidfds_;
};

EnvChildren* InstallEnvChildren(v8::Isolate* isolate) {
  auto* self = new EnvChildren();
  node::AddEnvironmentCleanupHook(isolate, EnvChildren::OnCleanup, self);
  return self;
}

// watchChild(pid) -> true when pid is now watched (a pidfd could be opened).
void WatchChild(const Callback& args) {
  v8::Isolate* isolate = args.GetIsolate();
  auto* self = static_cast<EnvChildren*>(args.Data().As<v8::External>()->Value());
  int64_t pid;
  if (!IntegerArg(isolate, args[0], "pid", 1, 0x7fffffff, &pid)) return;
  const long fd = syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0);
  if (fd < 0) {
    args.GetReturnValue().Set(false);
    return;
  }
  // pidfd_open sets close-on-exec: later children do not inherit it. An
  // entry of the same pid is stale (two live processes never share one).
  const auto stale = self->pidfds_.find(static_cast<int32_t>(pid));
  if (stale != self->pidfds_.end()) {
    close(stale->second);
    self->pidfds_.erase(stale);
  }
  self->pidfds_.emplace(static_cast<int32_t>(pid), static_cast<int>(fd));
  args.GetReturnValue().Set(true);
}

// unwatchChild(pid): its exit was seen (libuv reaped it); forgets it.
void UnwatchChild(const Callback& args) {
  v8::Isolate* isolate = args.GetIsolate();
  auto* self = static_cast<EnvChildren*>(args.Data().As<v8::External>()->Value());
  int64_t pid;
  if (!IntegerArg(isolate, args[0], "pid", 1, 0x7fffffff, &pid)) return;
  const auto found = self->pidfds_.find(static_cast<int32_t>(pid));
  if (found == self->pidfds_.end()) return;
  close(found->second);
  self->pidfds_.erase(found);
}

}  // namespace mpts
