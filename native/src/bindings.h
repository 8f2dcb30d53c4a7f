// bindings.h — the JavaScript-callable entry points of mpts_native.
//
// Each function is implemented next to the concern it exposes:
//   segment.cc   openSegment, aliasSegment, mapFile,
//                mappedFileBytes
//   futex_js.cc  futexWait, futexWake
//   async_wait.cc futexWaitAsync (plus the per-environment state it needs)
//   proc.cc      gettid, setParentDeathSignal
//   context.cc   asyncContextGet, asyncContextSwap
//   net.cc       tuneTcpKeepalive
//   spawn.cc     spawnDetached
//   children.cc  watchChild, unwatchChild (plus the per-environment list)
//   refcount.cc  dropCounted
// addon.cc wires them onto `exports`. All of them are plain v8 callbacks so
// they can work with SharedArrayBuffers directly (see binding.gyp for why the
// addon does not use N-API alone).
#ifndef MPTS_NATIVE_BINDINGS_H_
#define MPTS_NATIVE_BINDINGS_H_

#include <v8.h>

namespace mpts {

using Callback = v8::FunctionCallbackInfo<v8::Value>;

void OpenSegment(const Callback& args);
void AliasSegment(const Callback& args);
void MapFile(const Callback& args);
void MappedFileBytes(const Callback& args);
void FutexWait(const Callback& args);
void FutexWake(const Callback& args);
void FutexWaitAsync(const Callback& args);  // data(): the EnvWaits External
void GetTid(const Callback& args);
void SetParentDeathSignal(const Callback& args);
void AsyncContextGet(const Callback& args);
void AsyncContextSwap(const Callback& args);
void TuneTcpKeepalive(const Callback& args);
void SpawnDetached(const Callback& args);
void WatchChild(const Callback& args);    // data(): the EnvChildren External
void UnwatchChild(const Callback& args);  // data(): the EnvChildren External
void DropCounted(const Callback& args);

class EnvChildren;
EnvChildren* InstallEnvChildren(v8::Isolate* isolate);

}  // namespace mpts

#endif  // MPTS_NATIVE_BINDINGS_H_
