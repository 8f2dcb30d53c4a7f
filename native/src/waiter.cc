// waiter.cc — implementation of the futex_waitv waiter pool (see waiter.h).
//
// Locking: one mutex (Pool::mu_) guards every waiter's entry list, control
// word updates and `armed` flag. It is held only for list edits and for the
// O(n) snapshot/sweep around each futex_waitv call, never while sleeping.
// Lock order is pool mutex -> a sink's own mutex (inside OnWaitComplete);
// sinks never take the pool mutex while holding theirs.
#include "waiter.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <vector>

namespace mpts {

namespace {

// futex_waitv accepts FUTEX_WAITV_MAX (128) words; one is the control word.
constexpr size_t kWaitsPerThread = FUTEX_WAITV_MAX - 1;

// The waiter threads only sleep in futex_waitv and walk short vectors.
constexpr size_t kWaiterStackSize = 256 * 1024;

struct Entry {
  uint64_t id;
  uint32_t* word;
  uint32_t expected;
  int64_t deadline_ns;
  CompletionSink* sink;
  Pin pin;
};

// An entry cancelled while its thread may be inside futex_waitv with it.
struct Grave {
  uint64_t id;
  uint32_t* word;
  Pin pin;  // keeps `word` mapped until the wake it may owe is passed on
  // Set by the thread once it is out of futex_waitv: the entry was in the
  // vector the kernel had, so it may have absorbed a FUTEX_WAKE.
  bool forward = false;
};

struct Waiter {
  // Private futex word owned by this thread. Incremented (under the pool
  // lock) whenever `entries` changes, so a thread that is about to sleep with
  // a stale vector gets EAGAIN instead of missing the change.
  uint32_t control = 0;
  // True from the moment the thread snapshots `entries` until it is back
  // under the lock after futex_waitv: only then does a change need a
  // FUTEX_WAKE syscall. Cleared by the first waker so that a burst of
  // registrations costs one syscall, not one each.
  bool armed = false;
  // True while the thread may be inside futex_waitv with its last snapshot,
  // i.e. while the kernel may read words of entries removed meanwhile.
  bool sleeping = false;
  std::vector<Entry> entries;
  // Entries cancelled while `sleeping`: their segments must stay mapped
  // until this thread is out of futex_waitv and has passed on any wake they
  // may have absorbed, so the thread deals with them itself.
  std::vector<Grave> graveyard;
};

class Pool {
 public:
  uint64_t Add(WaitRequest&& request, int* err);
  void CancelAll(CompletionSink* sink);

 private:
  static void* ThreadMain(void* arg);
  void Run(Waiter* waiter);
  void Sweep(Waiter* waiter, uint64_t woken_id,
             const std::vector<uint64_t>* failed_ids);
  Waiter* StartWaiter(int* err);  // requires mu_
  // Records a change of `waiter->entries`; requires mu_. Returns true when
  // the caller must FUTEX_WAKE the control word after unlocking.
  static bool Touch(Waiter* waiter);

  std::mutex mu_;
  std::vector<std::unique_ptr<Waiter>> waiters_;  // never shrinks
  uint64_t last_id_ = 0;
  int supported_ = -1;  // futex_waitv availability; -1 = not probed yet
};

// Intentionally leaked: waiter threads run until the process ends and may be
// inside the pool while static destructors run.
Pool& Instance() {
  static Pool* pool = new Pool();
  return *pool;
}

bool Pool::Touch(Waiter* waiter) {
  __atomic_add_fetch(&waiter->control, 1, __ATOMIC_SEQ_CST);
  const bool wake = waiter->armed;
  waiter->armed = false;
  return wake;
}

uint64_t Pool::Add(WaitRequest&& request, int* err) {
  std::unique_lock<std::mutex> lock(mu_);
  if (supported_ < 0) supported_ = FutexWaitvSupported() ? 1 : 0;
  if (supported_ == 0) {
    *err = ENOSYS;
    return 0;
  }
  Waiter* waiter = nullptr;
  for (const auto& candidate : waiters_) {
    if (candidate->entries.size() < kWaitsPerThread) {
      waiter = candidate.get();
      break;
    }
  }
  if (waiter == nullptr && (waiter = StartWaiter(err)) == nullptr) return 0;

  const uint64_t id = ++last_id_;
  waiter->entries.push_back(Entry{id, request.word, request.expected,
                                  request.deadline_ns, request.sink,
                                  std::move(request.pin)});
  const bool wake = Touch(waiter);
  lock.unlock();
  // Waiter objects are never freed, so touching one after unlocking is safe.
  if (wake) FutexWakePrivate(&waiter->control, 1);
  return id;
}

void Pool::CancelAll(CompletionSink* sink) {
  std::vector<Pin> released;  // dropped after unlocking: munmap can be slow
  std::vector<Waiter*> to_wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& waiter : waiters_) {
      std::vector<Entry>& entries = waiter->entries;
      const size_t before = entries.size();
      for (size_t i = 0; i < entries.size();) {
        if (entries[i].sink != sink) {
          ++i;
          continue;
        }
        if (waiter->sleeping) {
          waiter->graveyard.push_back(
              Grave{entries[i].id, entries[i].word, std::move(entries[i].pin)});
        } else {
          // Not snapshotted yet (a thread that has not run), so the kernel
          // never saw it.
          released.push_back(std::move(entries[i].pin));
        }
        if (i + 1 != entries.size()) entries[i] = std::move(entries.back());
        entries.pop_back();
      }
      // Wake the thread so it stops sleeping on words nobody waits for any
      // more and drops its own pins on those segments.
      if (entries.size() != before && Touch(waiter.get())) {
        to_wake.push_back(waiter.get());
      }
    }
  }
  for (Waiter* waiter : to_wake) FutexWakePrivate(&waiter->control, 1);
}

Waiter* Pool::StartWaiter(int* err) {
  auto waiter = std::make_unique<Waiter>();
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, kWaiterStackSize);
  // The thread inherits the creator's signal mask. Block everything so that
  // process-directed signals (SIGINT, SIGCHLD, ...) keep being delivered to
  // Node's own threads and handled by libuv, not to a thread that would only
  // see an EINTR.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  pthread_t thread;
  const int rc = pthread_create(&thread, &attr, ThreadMain, waiter.get());
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    *err = rc;
    return nullptr;
  }
  pthread_setname_np(thread, "mpts-futex-wait");
  waiters_.push_back(std::move(waiter));
  return waiters_.back().get();
}

void* Pool::ThreadMain(void* arg) {
  Instance().Run(static_cast<Waiter*>(arg));
  return nullptr;
}

void Pool::Run(Waiter* waiter) {
  std::vector<struct futex_waitv> vector;
  std::vector<uint64_t> ids;  // ids[i] is the entry behind vector[i + 1]
  std::vector<Grave> dead;    // taken over from the graveyard
  vector.reserve(FUTEX_WAITV_MAX);
  ids.reserve(kWaitsPerThread);

  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // Snapshot the pending set; the control word goes first.
    vector.clear();
    ids.clear();
    struct futex_waitv control = {};
    control.val = LoadWord(&waiter->control);
    control.uaddr = reinterpret_cast<uintptr_t>(&waiter->control);
    control.flags = FUTEX2_SIZE_U32 | FUTEX2_PRIVATE;  // in-process only
    vector.push_back(control);
    int64_t deadline = kNoDeadline;
    for (const Entry& entry : waiter->entries) {
      struct futex_waitv slot = {};
      slot.val = entry.expected;
      slot.uaddr = reinterpret_cast<uintptr_t>(entry.word);
      slot.flags = FUTEX2_SIZE_U32;  // shared: woken from other processes
      vector.push_back(slot);
      ids.push_back(entry.id);
      deadline = std::min(deadline, entry.deadline_ns);
    }
    waiter->armed = true;
    waiter->sleeping = true;
    lock.unlock();

    // Cancelled entries the previous vector held: that futex_waitv has
    // returned, so none of them is queued in the kernel any more and none
    // can absorb another wake. Each may have absorbed one already, meant for
    // some other waiter of its word (possibly in another process, possibly
    // blocked in futexWait), and the kernel may not have reported it: it
    // names one index per return, and CancelAll removed the entry either
    // way. So pass one wake on for each, while the pin still keeps the word
    // mapped (a shared wake: the word's other waiters may be anywhere). Then
    // the segments may be unmapped (outside the lock: munmap can be slow).
    for (const Grave& grave : dead) {
      if (grave.forward) FutexWakeShared(grave.word, 1);
    }
    dead.clear();
    const long rc = FutexWaitv(vector.data(),
                               static_cast<unsigned>(vector.size()), deadline);
    const int err = rc < 0 ? errno : 0;

    lock.lock();
    waiter->armed = false;
    waiter->sleeping = false;
    dead.swap(waiter->graveyard);
    // An entry registered after the snapshot and cancelled before this
    // return was never queued in the kernel and owes no wake.
    for (Grave& grave : dead) {
      grave.forward = std::find(ids.begin(), ids.end(), grave.id) != ids.end();
    }
    const uint64_t woken_id =
        rc >= 1 && static_cast<size_t>(rc) <= ids.size() ? ids[rc - 1] : 0;
    // ETIMEDOUT, EAGAIN (some word changed; the control word counts) and
    // EINTR are routine and fully handled by the sweep. EAGAIN is also how
    // a wake that came while this thread was outside futex_waitv is caught:
    // its waker changed the word first, and the kernel compares each word
    // as it queues it, so a stale vector cannot go to sleep. Anything else
    // (EFAULT from a truncated segment file, ENOMEM) would repeat forever if
    // the same vector were resubmitted, so those waits are completed as
    // spurious wake-ups; the callers re-check their condition anyway.
    const bool failed =
        rc < 0 && err != ETIMEDOUT && err != EAGAIN && err != EINTR;
    Sweep(waiter, woken_id, failed ? &ids : nullptr);
  }
}

void Pool::Sweep(Waiter* waiter, uint64_t woken_id,
                 const std::vector<uint64_t>* failed_ids) {
  const int64_t now = MonotonicNowNs();
  std::vector<Entry>& entries = waiter->entries;
  // Every entry still listed is pinned by its own Entry::pin, so reading its
  // word is safe even if it was registered after the snapshot.
  for (size_t i = 0; i < entries.size();) {
    Entry& entry = entries[i];
    int result = -1;
    if (entry.id == woken_id ||
        (failed_ids != nullptr &&
         std::find(failed_ids->begin(), failed_ids->end(), entry.id) !=
             failed_ids->end())) {
      result = kWoken;
    } else if (LoadWord(entry.word) != entry.expected) {
      // Changed since it was registered. Wakers change the word before
      // waking, so this covers the wakes futex_waitv did not report (it
      // names one index, though concurrent wakes may have dequeued several
      // of our entries) and the wakes that came while this entry was not
      // queued in the kernel (registered after the snapshot, or during a
      // rebuild). Waiting for another wake could wait forever.
      result = kWoken;
    } else if (entry.deadline_ns <= now) {
      result = kTimedOut;
    }
    if (result < 0) {
      ++i;
      continue;
    }
    entry.sink->OnWaitComplete(entry.id, static_cast<WaitResult>(result),
                               entry.word, std::move(entry.pin));
    if (i + 1 != entries.size()) entry = std::move(entries.back());
    entries.pop_back();
  }
}

}  // namespace

uint64_t AddWait(WaitRequest request, int* err) {
  return Instance().Add(std::move(request), err);
}

void CancelWaits(CompletionSink* sink) { Instance().CancelAll(sink); }

}  // namespace mpts
