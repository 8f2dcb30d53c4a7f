// addon.cc — module registration for mpts_native.
//
// NODE_MODULE_INIT makes the addon context-aware: this function runs once
// for every environment (main thread, each worker_thread) that loads the
// addon, so everything tied to an isolate is created here, per environment,
// and reached through the functions' data. There are no static v8 handles;
// the only process-global state is V8-free: the waiter pool (waiter.cc)
// and the reaper of orphaned children (children.cc).
//
// Exports:
//   openSegment(path, size, create)                 -> SharedArrayBuffer
//   aliasSegment(sab)                               -> ArrayBuffer (same memory)
//   mapFile(path)                                   -> ArrayBuffer (the file, mapped)
//   mappedFileBytes()                               -> bytes mapFile holds mapped
//     (added within ABI 3, optional as tuneTcpKeepalive)
//   futexWait(sab, byteOffset, expected, timeoutMs) -> 0 | 1 | 2
//   futexWake(sab, byteOffset, count)               -> number woken
//   futexWaitAsync(sab, byteOffset, expected, timeoutMs) -> Promise<0|1|2>
//   gettid()                                        -> number
//   setParentDeathSignal(signal)                    -> boolean
//   asyncContextGet()                               -> frame | undefined
//   asyncContextSwap(frame)                         -> previous frame
//   tuneTcpKeepalive(fd, intervalSeconds, probes, userTimeoutMs) -> boolean
//     (added within ABI 3: the loader treats it as optional, so a build
//     from before it still loads)
//   spawnDetached(file, argv, cwd)                  -> { pid, stdin }
//     (added within ABI 3, optional as tuneTcpKeepalive)
//   watchChild(pid)                                 -> boolean (ABI 4)
//   unwatchChild(pid)                               -> undefined (ABI 4)
//   dropCounted(sab, byteOffset, count, progressSab, progressByteOffset)
//                                                   -> the word before (ABI 5)
//   version                                         -> kAbiVersion
// Result codes: 0 woken, 1 not-equal, 2 timed-out.
#include <node.h>

#include "async_wait.h"
#include "bindings.h"

namespace mpts {

namespace {

// Bumped whenever an export changes name, arguments or semantics, so the
// TypeScript loader can refuse a stale build instead of misbehaving. 4: the
// library is never unloaded (binding.gyp; an older build crashed a process
// whose worker thread alone had loaded it), watchChild and unwatchChild. 5:
// dropCounted.
constexpr int kAbiVersion = 5;

void SetFunction(v8::Local<v8::Context> context, v8::Local<v8::Object> target,
                 const char* name, v8::FunctionCallback callback, int length,
                 v8::Local<v8::Value> data = v8::Local<v8::Value>()) {
  v8::Isolate* isolate = context->GetIsolate();
  v8::Local<v8::String> js_name =
      v8::String::NewFromUtf8(isolate, name, v8::NewStringType::kInternalized)
          .ToLocalChecked();
  v8::Local<v8::Function> fn =
      v8::Function::New(context, callback, data, length,
                        v8::ConstructorBehavior::kThrow)
          .ToLocalChecked();
  fn->SetName(js_name);
  target->Set(context, js_name, fn).Check();
}

}  // namespace

}  // namespace mpts

// node.h's registration macro casts the init function to a type with one
// more (unused) parameter, which g++ flags with -Wcast-function-type.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcast-function-type"
NODE_MODULE_INIT(/* exports, module, context */) {
  using namespace mpts;
  v8::Isolate* isolate = context->GetIsolate();

  SetFunction(context, exports, "openSegment", OpenSegment, 3);
  SetFunction(context, exports, "aliasSegment", AliasSegment, 1);
  SetFunction(context, exports, "mapFile", MapFile, 1);
  SetFunction(context, exports, "mappedFileBytes", MappedFileBytes, 0);
  SetFunction(context, exports, "futexWait", FutexWait, 4);
  SetFunction(context, exports, "futexWake", FutexWake, 3);
  EnvWaits* waits = InstallEnvWaits(isolate, context);
  SetFunction(context, exports, "futexWaitAsync", FutexWaitAsync, 4,
              v8::External::New(isolate, waits));
  SetFunction(context, exports, "gettid", GetTid, 0);
  SetFunction(context, exports, "setParentDeathSignal", SetParentDeathSignal,
              1);
  SetFunction(context, exports, "asyncContextGet", AsyncContextGet, 0);
  SetFunction(context, exports, "asyncContextSwap", AsyncContextSwap, 1);
  SetFunction(context, exports, "tuneTcpKeepalive", TuneTcpKeepalive, 4);
  SetFunction(context, exports, "spawnDetached", SpawnDetached, 3);
  SetFunction(context, exports, "dropCounted", DropCounted, 5);
  EnvChildren* children = InstallEnvChildren(isolate);
  SetFunction(context, exports, "watchChild", WatchChild, 1,
              v8::External::New(isolate, children));
  SetFunction(context, exports, "unwatchChild", UnwatchChild, 1,
              v8::External::New(isolate, children));
  exports
      ->Set(context,
            v8::String::NewFromUtf8Literal(isolate, "version",
                                           v8::NewStringType::kInternalized),
            v8::Integer::New(isolate, kAbiVersion))
      .Check();
}
#pragma GCC diagnostic pop
