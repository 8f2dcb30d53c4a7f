// context.cc — the async context that V8 carries along promise chains.
//
// V8 keeps one "continuation-preserved embedder data" value per context: it
// is captured whenever a promise reaction is created (an `await`, a
// `.then`) and restored while that reaction runs. Node 20 does not use it,
// so the package owns it: a lock's `withLock` puts a task frame there and
// every `await` inside the callback continues with it. That is what
// AsyncLocalStorage offers, without the promise hook that AsyncLocalStorage
// installs in Node 20 (which makes every promise of the process about 2.5x
// slower). The JS side wraps timers and ticks to pass frames on;
// event-emitter and I/O callbacks start with no frame.
#include "bindings.h"

namespace mpts {

// asyncContextGet() -> the current frame (undefined when none).
void AsyncContextGet(const Callback& args) {
  args.GetReturnValue().Set(args.GetIsolate()
                                ->GetCurrentContext()
                                ->GetContinuationPreservedEmbedderData());
}

// asyncContextSwap(frame) -> the previous frame; `frame` is current from now.
void AsyncContextSwap(const Callback& args) {
  v8::Local<v8::Context> context = args.GetIsolate()->GetCurrentContext();
  args.GetReturnValue().Set(context->GetContinuationPreservedEmbedderData());
  context->SetContinuationPreservedEmbedderData(args[0]);
}

}  // namespace mpts
