// errors.cc — see errors.h.
//
// node::UVException already builds exactly the error objects that fs throws
// (message, code, errno, syscall, path), so it is reused instead of
// re-implementing errno-name tables. On Unix libuv error codes are negated
// errno values, hence the `-err`.
#include "errors.h"

#include <node.h>

namespace mpts {

void ThrowTypeError(v8::Isolate* isolate, const char* message) {
  isolate->ThrowException(v8::Exception::TypeError(
      v8::String::NewFromUtf8(isolate, message).ToLocalChecked()));
}

void ThrowRangeError(v8::Isolate* isolate, const char* message) {
  isolate->ThrowException(v8::Exception::RangeError(
      v8::String::NewFromUtf8(isolate, message).ToLocalChecked()));
}

v8::Local<v8::Value> ErrnoError(v8::Isolate* isolate, int err,
                                const char* syscall, const char* path,
                                const char* message) {
  return node::UVException(isolate, -err, syscall, message, path);
}

void ThrowErrno(v8::Isolate* isolate, int err, const char* syscall,
                const char* path, const char* message) {
  isolate->ThrowException(ErrnoError(isolate, err, syscall, path, message));
}

}  // namespace mpts
