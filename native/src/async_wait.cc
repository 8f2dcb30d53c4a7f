// async_wait.cc — futexWaitAsync and the per-environment delivery of its
// completions (see async_wait.h for the split with waiter.cc).
//
// Life of an asynchronous wait:
//  1. futexWaitAsync validates its arguments and checks the word. If it
//     already differs, it returns an already-fulfilled promise of 1 (cheap:
//     no lock, no syscall, no waiter thread, not even a new promise). A
//     timeout <= 0 is likewise answered at once with 2.
//  2. Otherwise it creates a promise and hands the wait to the pool, pinning
//     the buffer's backing store; the resolver is remembered under the id
//     the pool returns. The first pending wait uv_ref()s the async handle so the loop stays
//     alive; the handle is unref'd again when none is pending, so an idle
//     process or worker can still exit on its own.
//  3. A waiter thread queues {id, result} here and calls uv_async_send.
//  4. On the JS thread, OnAsync drains the queue inside a node::CallbackScope
//     (so promise reactions run right after, as for any libuv callback) and
//     resolves the matching promises.
// On environment teardown the cleanup hook first cancels this environment's
// waits in the pool (after which no waiter thread can reach this object),
// then drops the resolvers and closes the uv handle; the object is freed in
// the close callback. Pending promises of a terminated worker never settle,
// which is fine since no JS can observe them any more.
//
// A kWoken completion that reached this object but that no JS will act on
// may have consumed a FUTEX_WAKE meant for any waiter of its word, anywhere.
// So a terminated worker must not keep it: completions still queued at
// cleanup, and those resolved by an OnAsync whose promise reactions did not
// run (it can come during teardown), are passed on with one
// FutexWakeShared(word, 1) each (see "the contract" in waiter.h).
#include "async_wait.h"

#include <node.h>
#include <uv.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "args.h"
#include "bindings.h"
#include "errors.h"
#include "waiter.h"

namespace mpts {

namespace {

v8::Local<v8::Promise> SettledPromise(v8::Local<v8::Context> context,
                                      WaitResult result) {
  v8::Local<v8::Promise::Resolver> resolver =
      v8::Promise::Resolver::New(context).ToLocalChecked();
  resolver
      ->Resolve(context, v8::Integer::New(context->GetIsolate(), result))
      .Check();
  return resolver->GetPromise();
}

}  // namespace

class EnvWaits final : public CompletionSink {
 public:
  EnvWaits(v8::Isolate* isolate, v8::Local<v8::Context> context);
  EnvWaits(const EnvWaits&) = delete;
  EnvWaits& operator=(const EnvWaits&) = delete;

  // futexWaitAsync body; runs on this environment's JS thread.
  void Start(const Callback& args);

  // CompletionSink: runs on a waiter thread (pool lock held).
  void OnWaitComplete(uint64_t id, WaitResult result, uint32_t* word,
                      Pin pin) override;

 private:
  struct Completion {
    uint64_t id;
    WaitResult result;
    uint32_t* word;  // kept mapped by `pin`
    Pin pin;  // released on the JS thread, after the promise is resolved
  };

  // Passes on the wake each kWoken completion in [begin, end) consumed.
  static void ForwardWakes(const Completion* begin, const Completion* end);

  ~EnvWaits() = default;  // only via the close callback of async_

  static void OnAsync(uv_async_t* handle);
  static void MarkDrained(const Callback& args);
  static void OnCleanup(void* arg, void (*done)(void*), void* done_arg);
  static void OnClosed(uv_handle_t* handle);
  // Keeps the loop alive exactly while some wait is pending.
  void UpdateLoopRef();

  v8::Isolate* const isolate_;
  v8::Global<v8::Context> context_;
  v8::Global<v8::Object> resource_;  // async resource for CallbackScope
  // Already-fulfilled promises returned for answers known at call time.
  // Sharing them is unobservable apart from identity (a settled promise
  // keeps no reactions), and it makes the "value already changed" path
  // about 3x cheaper than creating and resolving a fresh promise.
  v8::Global<v8::Promise> not_equal_;
  v8::Global<v8::Promise> timed_out_;
  // drain_probe_ is a function that sets element 0 of drained_ to true;
  // OnAsync queues it as a microtask to learn whether its promise reactions
  // ran (see there). A JS array as the flag: it lives as long as the probe
  // that may write to it, whatever the order of teardown.
  v8::Global<v8::Array> drained_;
  v8::Global<v8::Function> drain_probe_;
  uv_async_t async_;

  std::mutex mu_;
  std::vector<Completion> queue_;  // guarded by mu_

  // JS thread only.
  std::unordered_map<uint64_t, v8::Global<v8::Promise::Resolver>> pending_;
  node::AsyncCleanupHookHandle cleanup_hook_;
  void (*cleanup_done_)(void*) = nullptr;
  void* cleanup_done_arg_ = nullptr;

  friend EnvWaits* InstallEnvWaits(v8::Isolate*, v8::Local<v8::Context>);
};

EnvWaits::EnvWaits(v8::Isolate* isolate, v8::Local<v8::Context> context)
    : isolate_(isolate),
      context_(isolate, context),
      resource_(isolate, v8::Object::New(isolate)),
      not_equal_(isolate, SettledPromise(context, kNotEqual)),
      timed_out_(isolate, SettledPromise(context, kTimedOut)) {
  v8::Local<v8::Array> drained = v8::Array::New(isolate, 1);
  drained_.Reset(isolate, drained);
  drain_probe_.Reset(isolate, v8::Function::New(context, MarkDrained, drained)
                                  .ToLocalChecked());
}

EnvWaits* InstallEnvWaits(v8::Isolate* isolate,
                          v8::Local<v8::Context> context) {
  auto* self = new EnvWaits(isolate, context);
  uv_async_init(node::GetCurrentEventLoop(isolate), &self->async_,
                EnvWaits::OnAsync);
  self->async_.data = self;
  // Idle until the first wait is registered: must not keep the loop alive.
  uv_unref(reinterpret_cast<uv_handle_t*>(&self->async_));
  // The asynchronous flavour of cleanup hook lets teardown wait for the
  // uv_close callback before the loop is closed.
  self->cleanup_hook_ =
      node::AddEnvironmentCleanupHook(isolate, EnvWaits::OnCleanup, self);
  return self;
}

void EnvWaits::UpdateLoopRef() {
  auto* handle = reinterpret_cast<uv_handle_t*>(&async_);
  if (pending_.empty()) {
    uv_unref(handle);
  } else {
    uv_ref(handle);
  }
}

void EnvWaits::Start(const Callback& args) {
  v8::Local<v8::SharedArrayBuffer> sab;
  uint32_t* word = FutexWordArg(isolate_, args[0], args[1], &sab);
  if (word == nullptr) return;
  uint32_t expected;
  double timeout_ms;
  if (!WordValueArg(isolate_, args[2], "expected", &expected) ||
      !TimeoutArg(isolate_, args[3], &timeout_ms)) {
    return;
  }

  if (LoadWord(word) != expected) {
    args.GetReturnValue().Set(not_equal_.Get(isolate_));
    return;
  }
  if (timeout_ms <= 0) {
    args.GetReturnValue().Set(timed_out_.Get(isolate_));
    return;
  }

  v8::Local<v8::Context> context = isolate_->GetCurrentContext();
  v8::Local<v8::Promise::Resolver> resolver;
  if (!v8::Promise::Resolver::New(context).ToLocal(&resolver)) return;
  args.GetReturnValue().Set(resolver->GetPromise());

  int err = 0;
  const uint64_t id =
      AddWait(WaitRequest{word, expected, DeadlineAfterMs(timeout_ms),
                          sab->GetBackingStore(), this},
              &err);
  if (id == 0) {
    // A platform limitation, not a usage error: report it via the promise.
    resolver->Reject(context, ErrnoError(isolate_, err, "futex_waitv", nullptr))
        .Check();
    return;
  }
  // The completion for `id` can only be delivered by OnAsync on this very
  // thread, so registering the resolver after AddWait cannot miss it.
  pending_.emplace(id, v8::Global<v8::Promise::Resolver>(isolate_, resolver));
  UpdateLoopRef();
}

void EnvWaits::OnWaitComplete(uint64_t id, WaitResult result, uint32_t* word,
                              Pin pin) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(Completion{id, result, word, std::move(pin)});
  }
  // Coalesces: several completions before the loop runs cost one callback.
  uv_async_send(&async_);
}

void EnvWaits::ForwardWakes(const Completion* begin, const Completion* end) {
  for (const Completion* c = begin; c != end; ++c) {
    // A timed-out entry consumed no wake: a woken one's word had changed,
    // and the sweep looks at that before the deadline.
    if (c->result == kWoken) FutexWakeShared(c->word, 1);
  }
}

void EnvWaits::OnAsync(uv_async_t* handle) {
  auto* self = static_cast<EnvWaits*>(handle->data);
  std::vector<Completion> batch;
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    batch.swap(self->queue_);
  }
  if (batch.empty()) return;
  const bool any_woken =
      std::any_of(batch.begin(), batch.end(),
                  [](const Completion& c) { return c.result == kWoken; });

  v8::Isolate* isolate = self->isolate_;
  v8::HandleScope handle_scope(isolate);
  v8::Local<v8::Context> context = self->context_.Get(isolate);
  v8::Context::Scope context_scope(context);
  // Did the promise reactions run? They do not when this callback comes
  // while the environment is being torn down (the loop still turns for the
  // cleanup, but JS may no longer be called, and the isolate does not say
  // it is terminating), nor when termination cuts the microtask queue
  // short. The probe, queued after every resolution, runs after their
  // reactions or not at all.
  v8::Local<v8::Array> drained = self->drained_.Get(isolate);
  const bool probing =
      any_woken &&
      drained->Set(context, 0, v8::False(isolate)).FromMaybe(false);
  {
    // Like MakeCallback: when the scope closes, the microtask queue and
    // process.nextTick queue are drained, so `await futexWaitAsync(...)`
    // continues right now rather than at some later, unrelated callback.
    node::CallbackScope callback_scope(isolate, self->resource_.Get(isolate),
                                       node::async_context{0, 0});
    bool resolved_all = true;
    for (const Completion& completion : batch) {
      auto it = self->pending_.find(completion.id);
      if (it == self->pending_.end()) continue;
      v8::Local<v8::Promise::Resolver> resolver = it->second.Get(isolate);
      self->pending_.erase(it);
      // Fails only while the isolate is terminating.
      if (resolver->Resolve(context,
                            v8::Integer::New(isolate, completion.result))
              .IsNothing()) {
        resolved_all = false;
        break;
      }
    }
    if (probing && resolved_all) {
      context->GetMicrotaskQueue()->EnqueueMicrotask(
          isolate, self->drain_probe_.Get(isolate));
    }
    // Un-ref before the reactions run: a reaction that waits again re-refs.
    self->UpdateLoopRef();
  }
  // If the reactions did not run, these waiters never re-checked, and each
  // woken one may hold a wake meant for another waiter of its word: pass
  // them on. (When termination cut the queue short, some did run; which
  // ones is unknowable, and a wake that was not needed only costs a
  // re-check.)
  v8::Local<v8::Value> ran;
  if (any_woken &&
      !(probing && drained->Get(context, 0).ToLocal(&ran) && ran->IsTrue())) {
    ForwardWakes(batch.data(), batch.data() + batch.size());
  }
}

void EnvWaits::MarkDrained(const Callback& args) {
  v8::Isolate* isolate = args.GetIsolate();
  // Cannot fail but under termination, which OnAsync reads as "not run".
  args.Data()
      .As<v8::Array>()
      ->Set(isolate->GetCurrentContext(), 0, v8::True(isolate))
      .FromMaybe(false);
}

void EnvWaits::OnCleanup(void* arg, void (*done)(void*), void* done_arg) {
  auto* self = static_cast<EnvWaits*>(arg);
  // After this, no waiter thread holds or will obtain a pointer to `self`.
  // Waits still pending are the pool's to pass on; completions queued here
  // are ours.
  CancelWaits(self);
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    ForwardWakes(self->queue_.data(),
                 self->queue_.data() + self->queue_.size());
    self->queue_.clear();
  }
  self->pending_.clear();  // v8::Global dtors; the isolate is still alive
  self->context_.Reset();
  self->resource_.Reset();
  self->not_equal_.Reset();
  self->timed_out_.Reset();
  self->drained_.Reset();
  self->drain_probe_.Reset();
  self->cleanup_done_ = done;
  self->cleanup_done_arg_ = done_arg;
  uv_close(reinterpret_cast<uv_handle_t*>(&self->async_), OnClosed);
}

void EnvWaits::OnClosed(uv_handle_t* handle) {
  auto* self = static_cast<EnvWaits*>(handle->data);
  void (*done)(void*) = self->cleanup_done_;
  void* done_arg = self->cleanup_done_arg_;
  delete self;
  done(done_arg);  // lets Node finish tearing the environment down
}

// futexWaitAsync(sab, byteOffset, expected, timeoutMs) -> Promise<0 | 1 | 2>
void FutexWaitAsync(const Callback& args) {
  static_cast<EnvWaits*>(args.Data().As<v8::External>()->Value())->Start(args);
}

}  // namespace mpts
