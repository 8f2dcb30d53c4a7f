// args.cc — see args.h.
#include "args.h"

#include <climits>
#include <cmath>
#include <cstdio>

#include "errors.h"

namespace mpts {

namespace {

// Throws a TypeError/RangeError whose message mentions the argument name.
void ThrowNamed(v8::Isolate* isolate, bool range, const char* name,
                const char* what) {
  char message[160];
  snprintf(message, sizeof(message), "The \"%s\" argument %s", name, what);
  if (range) {
    ThrowRangeError(isolate, message);
  } else {
    ThrowTypeError(isolate, message);
  }
}

}  // namespace

uint32_t* FutexWordArg(v8::Isolate* isolate, v8::Local<v8::Value> buffer,
                       v8::Local<v8::Value> byte_offset,
                       v8::Local<v8::SharedArrayBuffer>* buffer_out) {
  if (!buffer->IsSharedArrayBuffer()) {
    ThrowNamed(isolate, false, "sab", "must be a SharedArrayBuffer");
    return nullptr;
  }
  v8::Local<v8::SharedArrayBuffer> sab = buffer.As<v8::SharedArrayBuffer>();
  const size_t length = sab->ByteLength();
  int64_t offset;
  if (!IntegerArg(isolate, byte_offset, "byteOffset", 0,
                  static_cast<double>(length), &offset)) {
    return nullptr;
  }
  // Futexes operate on naturally aligned 32-bit words; the kernel would
  // reject a misaligned address with EINVAL, but only after we had already
  // read through it.
  if (offset % 4 != 0 || static_cast<uint64_t>(offset) + 4 > length) {
    ThrowNamed(isolate, true, "byteOffset",
               "must be a multiple of 4 that leaves 4 bytes in the buffer");
    return nullptr;
  }
  if (buffer_out != nullptr) *buffer_out = sab;
  return reinterpret_cast<uint32_t*>(static_cast<char*>(sab->Data()) + offset);
}

bool WordValueArg(v8::Isolate* isolate, v8::Local<v8::Value> value,
                  const char* name, uint32_t* out) {
  if (value->IsInt32()) {  // the common case, no floating point needed
    *out = static_cast<uint32_t>(value.As<v8::Int32>()->Value());
    return true;
  }
  if (!value->IsNumber()) {
    ThrowNamed(isolate, false, name, "must be a number");
    return false;
  }
  // ECMAScript ToUint32 (same bits as ToInt32): truncate, then modulo 2^32.
  double d = value.As<v8::Number>()->Value();
  if (!std::isfinite(d)) {
    *out = 0;
    return true;
  }
  d = std::fmod(std::trunc(d), 4294967296.0);
  if (d < 0) d += 4294967296.0;
  *out = static_cast<uint32_t>(d);
  return true;
}

bool TimeoutArg(v8::Isolate* isolate, v8::Local<v8::Value> value, double* out) {
  if (value->IsUndefined()) {
    *out = INFINITY;
    return true;
  }
  if (!value->IsNumber()) {
    ThrowNamed(isolate, false, "timeoutMs", "must be a number");
    return false;
  }
  const double ms = value.As<v8::Number>()->Value();
  *out = std::isnan(ms) ? INFINITY : ms;
  return true;
}

bool WakeCountArg(v8::Isolate* isolate, v8::Local<v8::Value> value, int* out) {
  if (value->IsUndefined()) {
    *out = INT_MAX;
    return true;
  }
  if (!value->IsNumber()) {
    ThrowNamed(isolate, false, "count", "must be a number");
    return false;
  }
  const double count = value.As<v8::Number>()->Value();
  if (std::isnan(count) || count <= 0) {
    *out = 0;
  } else if (count >= static_cast<double>(INT_MAX)) {
    *out = INT_MAX;
  } else {
    *out = static_cast<int>(count);  // truncates toward zero
  }
  return true;
}

bool IntegerArg(v8::Isolate* isolate, v8::Local<v8::Value> value,
                const char* name, double min, double max, int64_t* out) {
  if (!value->IsNumber()) {
    ThrowNamed(isolate, false, name, "must be a number");
    return false;
  }
  const double d = value.As<v8::Number>()->Value();
  if (!(d >= min && d <= max) || std::trunc(d) != d) {
    char what[96];
    snprintf(what, sizeof(what), "must be an integer in [%.0f, %.0f]", min,
             max);
    ThrowNamed(isolate, true, name, what);
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

}  // namespace mpts
