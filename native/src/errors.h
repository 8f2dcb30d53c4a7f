// errors.h — how the addon reports failures to JavaScript.
//
// Two families of errors:
//  * Misuse of the API (wrong argument types, out-of-range offsets) throws a
//    plain TypeError/RangeError, like Node's own argument validation.
//  * Operating-system failures are turned into the same shape of Error as
//    Node's fs module produces: message "ENOENT: no such file or directory,
//    open '/dev/shm/x'", with .code, .errno, .syscall and .path set, so the
//    TypeScript layer can branch on err.code exactly as it would for fs.
#ifndef MPTS_NATIVE_ERRORS_H_
#define MPTS_NATIVE_ERRORS_H_

#include <v8.h>

namespace mpts {

void ThrowTypeError(v8::Isolate* isolate, const char* message);
void ThrowRangeError(v8::Isolate* isolate, const char* message);

// Builds an fs-style error for a failed system call. `err` is a positive errno
// value; `path` and `message` may be null (message defaults to strerror text).
v8::Local<v8::Value> ErrnoError(v8::Isolate* isolate, int err,
                                const char* syscall, const char* path,
                                const char* message = nullptr);

// Throws ErrnoError(...) in the current isolate.
void ThrowErrno(v8::Isolate* isolate, int err, const char* syscall,
                const char* path, const char* message = nullptr);

}  // namespace mpts

#endif  // MPTS_NATIVE_ERRORS_H_
