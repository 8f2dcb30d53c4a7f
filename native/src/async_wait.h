// async_wait.h — per-environment half of futexWaitAsync.
//
// Each Node environment (the main thread and every worker_thread) that loads
// the addon gets one EnvWaits. It owns everything that is tied to that
// environment's isolate and event loop:
//   * the v8::Promise::Resolver of each pending wait (as v8::Global, keyed by
//     the id the waiter pool assigned),
//   * a uv_async_t on the environment's loop plus a mutex-protected queue,
//     through which waiter threads hand completions back to the JS thread.
// The process-global half (the waiter threads) lives in waiter.h and holds
// no V8 handles at all.
#ifndef MPTS_NATIVE_ASYNC_WAIT_H_
#define MPTS_NATIVE_ASYNC_WAIT_H_

#include <v8.h>

namespace mpts {

class EnvWaits;

// Creates the EnvWaits of the environment that owns `context` and registers
// the cleanup hook that destroys it when that environment shuts down (worker
// terminated, process exiting). The result is what FutexWaitAsync expects as
// its External data.
EnvWaits* InstallEnvWaits(v8::Isolate* isolate, v8::Local<v8::Context> context);

}  // namespace mpts

#endif  // MPTS_NATIVE_ASYNC_WAIT_H_
