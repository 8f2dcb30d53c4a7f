// refcount.cc — dropCounted: drop references on a shared count word and
// count the drop on a child's drop progress, in one native call.
//
// A child logs each reference it gives back before it drops it, and counts
// the drops of its last logged batch in shared memory (src/shm/
// drop-progress.ts), so that its parent, once it is gone, gives back exactly
// the ones it never did. The count must come before the drop (a kill between
// the two then leaks that one reference; the other order would drop it
// twice), and nothing may stop the child between them. A worker thread's
// terminate is served at function entries, at loop back-edges and at the
// entry of every built-in, Atomics.sub included, so in JavaScript it could
// land between the count and the drop. Inside this call nothing of V8 runs:
// a terminate is served before it (neither done) or after it (both done).
// Only a SIGKILL between the two instructions still leaks the one drop.
#include "args.h"
#include "bindings.h"

namespace mpts {

// dropCounted(sab, byteOffset, count, progressSab, progressByteOffset)
//   -> the count word's value before: count was subtracted only when that
//      was at least count (a smaller one is refused and left as it was).
// progressSab null: nothing is counted. Otherwise count is added to the
// progress word first, also when the drop is then refused: a refused drop
// is done too, never to be retried by the parent.
void DropCounted(const Callback& args) {
  v8::Isolate* isolate = args.GetIsolate();
  uint32_t* word = FutexWordArg(isolate, args[0], args[1]);
  if (word == nullptr) return;
  int64_t count;
  if (!IntegerArg(isolate, args[2], "count", 1, 2147483647.0, &count)) return;
  uint32_t* progress = nullptr;
  if (!args[3]->IsNull()) {
    progress = FutexWordArg(isolate, args[3], args[4]);
    if (progress == nullptr) return;
  }
  const int32_t n = static_cast<int32_t>(count);
  if (progress != nullptr) {
    __atomic_fetch_add(reinterpret_cast<int32_t*>(progress), n,
                       __ATOMIC_SEQ_CST);
  }
  int32_t* refs = reinterpret_cast<int32_t*>(word);
  int32_t seen = __atomic_load_n(refs, __ATOMIC_SEQ_CST);
  while (seen >= n &&
         !__atomic_compare_exchange_n(refs, &seen, seen - n, false,
                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    // `seen` was reloaded by the failed exchange.
  }
  args.GetReturnValue().Set(seen);
}

}  // namespace mpts
