// args.h — validation and conversion of JavaScript arguments.
//
// Every exported function funnels its arguments through these helpers so that
// misuse is reported uniformly (TypeError for a wrong type, RangeError for a
// bad value) and so that no raw pointer into a SharedArrayBuffer is ever
// formed before its bounds and alignment have been checked. Each helper
// returns false (or nullptr) after having thrown; callers just return.
#ifndef MPTS_NATIVE_ARGS_H_
#define MPTS_NATIVE_ARGS_H_

#include <v8.h>

#include <cstdint>

namespace mpts {

// Resolves (sharedArrayBuffer, byteOffset) to a 4-byte-aligned word inside the
// buffer. Optionally hands back the buffer itself (to pin its backing store).
uint32_t* FutexWordArg(v8::Isolate* isolate, v8::Local<v8::Value> buffer,
                       v8::Local<v8::Value> byte_offset,
                       v8::Local<v8::SharedArrayBuffer>* buffer_out = nullptr);

// A Number converted with ECMAScript ToInt32 and reinterpreted as the raw
// 32-bit pattern, so both -1 and 0xffffffff name the same futex value.
bool WordValueArg(v8::Isolate* isolate, v8::Local<v8::Value> value,
                  const char* name, uint32_t* out);

// A timeout in milliseconds. undefined and NaN mean "forever" (as for
// Atomics.wait); the caller interprets <= 0 as "check only".
bool TimeoutArg(v8::Isolate* isolate, v8::Local<v8::Value> value, double* out);

// A wake count: undefined/Infinity -> INT_MAX, clamped into [0, INT_MAX],
// NaN -> 0 (Atomics.notify's ToIntegerOrInfinity rules).
bool WakeCountArg(v8::Isolate* isolate, v8::Local<v8::Value> value, int* out);

// An integral Number within [min, max]; `name` is used in the message.
bool IntegerArg(v8::Isolate* isolate, v8::Local<v8::Value> value,
                const char* name, double min, double max, int64_t* out);

}  // namespace mpts

#endif  // MPTS_NATIVE_ARGS_H_
