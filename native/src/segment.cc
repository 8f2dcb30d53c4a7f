// segment.cc — openSegment(path, size, create): a file mapped MAP_SHARED and
// exposed to JavaScript as a genuine SharedArrayBuffer; aliasSegment(sab): a
// plain ArrayBuffer over the same memory, for bulk copies; mapFile(path): a
// whole file mapped as a plain ArrayBuffer (a large queue item, received
// without a copy); mappedFileBytes(): how much of those is still mapped.
//
// Design:
//  * The segment is an ordinary file (normally on the /dev/shm tmpfs). The
//    creator opens it with O_CREAT|O_EXCL so two processes can never both
//    believe they created (and must initialise) the same segment.
//  * The mapping is wrapped in a v8::BackingStore whose deleter munmaps it.
//    V8 reference-counts backing stores across isolates, so the same mapping
//    can be posted to worker_threads, and it is unmapped only when the last
//    SharedArrayBuffer (and the last pending futexWaitAsync, which pins the
//    store) is gone. Nothing here owns a v8 handle.
//  * The descriptor is closed right after mmap: the mapping keeps the file
//    alive on its own, and an fd per segment would leak descriptors in
//    processes attaching many segments.
//  * V8 copies into or out of a SharedArrayBuffer with relaxed atomic word
//    stores (TypedArray.prototype.set), several times slower than memcpy for
//    a 1 KiB item. The channel copies whole frames only while its protocol
//    already gives it exclusive use of those bytes (a producer's frame past
//    TAIL, a consumer's committed frame before HEAD moves), so it copies
//    through a plain ArrayBuffer aliasing the mapping, at memcpy speed. The
//    alias holds a reference to the SharedArrayBuffer's backing store, so
//    the mapping outlives every alias; it is never handed to user code.
//  * Unlinking is left to the caller (like shm_unlink in Python's
//    SharedMemory): attached processes keep working after the name is gone.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "args.h"
#include "bindings.h"
#include "errors.h"

namespace mpts {

namespace {

// Largest size a JS Number can state exactly; also far above any mapping.
constexpr double kMaxSafeInteger = 9007199254740991.0;

void UnmapBackingStore(void* data, size_t length, void* /*deleter_data*/) {
  munmap(data, length);
}

// Bytes of mapFile mappings not yet unmapped, over every isolate of the
// process. A mapping of an unlinked spill file still holds its tmpfs pages,
// and V8 frees it only when it collects the ArrayBuffer (a GC it triggers by
// its own external-memory rule, tens of MiB later), so the reader checks
// this against a budget before mapping another (src/channel/spill.ts).
// Deleters may run on V8's sweeper thread: hence atomic.
std::atomic<size_t> g_mapped_file_bytes{0};

void UnmapFile(void* data, size_t length, void* /*deleter_data*/) {
  munmap(data, length);
  g_mapped_file_bytes.fetch_sub(length, std::memory_order_relaxed);
}

// Closes a descriptor on every path out of OpenSegment.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

// Reads a path argument: a non-empty string without NUL bytes (throws a
// TypeError and returns false otherwise).
bool PathArg(v8::Isolate* isolate, v8::Local<v8::Value> value,
             std::string* path) {
  if (!value->IsString()) {
    ThrowTypeError(isolate, "The \"path\" argument must be a string");
    return false;
  }
  v8::String::Utf8Value utf8_path(isolate, value);
  path->assign(*utf8_path, utf8_path.length());
  if (path->empty() || path->find('\0') != std::string::npos) {
    ThrowTypeError(isolate,
                   "The \"path\" argument must be a non-empty string without "
                   "null bytes");
    return false;
  }
  return true;
}

}  // namespace

void OpenSegment(const Callback& args) {
  v8::Isolate* isolate = args.GetIsolate();
  std::string path;
  if (!PathArg(isolate, args[0], &path)) return;
  int64_t requested;
  if (!IntegerArg(isolate, args[1], "size", 0, kMaxSafeInteger, &requested)) {
    return;
  }
  const bool create = args[2]->BooleanValue(isolate);

  size_t size = static_cast<size_t>(requested);
  int fd;
  if (create) {
    if (size == 0) {
      ThrowRangeError(isolate, "A new segment needs a size greater than 0");
      return;
    }
    fd = open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) return ThrowErrno(isolate, errno, "open", path.c_str());
  } else {
    fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return ThrowErrno(isolate, errno, "open", path.c_str());
  }
  FdCloser closer(fd);

  if (create) {
    if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
      const int err = errno;
      // We created the file (O_EXCL), so nobody else can be using it yet;
      // do not leave an unusable zero-length name behind.
      unlink(path.c_str());
      return ThrowErrno(isolate, err, "ftruncate", path.c_str());
    }
    // tmpfs allocates pages on first touch, and a touch that finds the file
    // system full raises SIGBUS, which kills the process. Allocating up front
    // turns a full /dev/shm into an ENOSPC error here instead.
    const int err = posix_fallocate(fd, 0, static_cast<off_t>(size));
    if (err != 0) {
      unlink(path.c_str());
      return ThrowErrno(isolate, err, "posix_fallocate", path.c_str(),
                        err == ENOSPC
                            ? "no space left in /dev/shm for a new shared "
                              "segment (free shared memory, or enlarge "
                              "/dev/shm)"
                            : nullptr);
    }
  } else {
    struct stat st;
    if (fstat(fd, &st) != 0) {
      return ThrowErrno(isolate, errno, "fstat", path.c_str());
    }
    const size_t file_size = static_cast<size_t>(st.st_size);
    if (size == 0) size = file_size;
    if (size == 0) {
      return ThrowErrno(isolate, EINVAL, "mmap", path.c_str(),
                        "segment file is empty");
    }
    if (size > file_size) {
      // Touching pages past the end of the file would raise SIGBUS, so refuse
      // up front with a readable error.
      char message[128];
      snprintf(message, sizeof(message),
               "requested %zu bytes but the segment has only %zu", size,
               file_size);
      return ThrowErrno(isolate, EINVAL, "mmap", path.c_str(), message);
    }
  }

  void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    const int err = errno;
    if (create) unlink(path.c_str());
    return ThrowErrno(isolate, err, "mmap", path.c_str());
  }

  std::shared_ptr<v8::BackingStore> store =
      v8::SharedArrayBuffer::NewBackingStore(data, size, UnmapBackingStore,
                                             nullptr);
  args.GetReturnValue().Set(
      v8::SharedArrayBuffer::New(isolate, std::move(store)));
}

void AliasSegment(const Callback& args) {
  v8::Isolate* isolate = args.GetIsolate();
  if (args.Length() < 1 || !args[0]->IsSharedArrayBuffer()) {
    isolate->ThrowException(v8::Exception::TypeError(
        v8::String::NewFromUtf8Literal(isolate,
                                       "aliasSegment: sab must be a "
                                       "SharedArrayBuffer")));
    return;
  }
  std::shared_ptr<v8::BackingStore> shared =
      args[0].As<v8::SharedArrayBuffer>()->GetBackingStore();
  if (shared->ByteLength() == 0) {
    args.GetReturnValue().Set(v8::ArrayBuffer::New(isolate, 0));
    return;
  }
  auto* keep = new std::shared_ptr<v8::BackingStore>(shared);
  std::shared_ptr<v8::BackingStore> alias = v8::ArrayBuffer::NewBackingStore(
      shared->Data(), shared->ByteLength(),
      [](void*, size_t, void* data) {
        delete static_cast<std::shared_ptr<v8::BackingStore>*>(data);
      },
      keep);
  args.GetReturnValue().Set(v8::ArrayBuffer::New(isolate, std::move(alias)));
}

// The reader of a spill file (src/channel/spill.ts) is its only user: the
// file is unlinked right after this returns, so MAP_SHARED gives it private
// memory without the copy-on-write that MAP_PRIVATE would pay on a write.
// Pages are faulted in as they are read; nothing is copied up front.
void MapFile(const Callback& args) {
  v8::Isolate* isolate = args.GetIsolate();
  std::string path;
  if (!PathArg(isolate, args[0], &path)) return;
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ThrowErrno(isolate, errno, "open", path.c_str());
  FdCloser closer(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return ThrowErrno(isolate, errno, "fstat", path.c_str());
  }
  if (!S_ISREG(st.st_mode)) {
    return ThrowErrno(isolate, EINVAL, "mmap", path.c_str(),
                      "not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    args.GetReturnValue().Set(v8::ArrayBuffer::New(isolate, 0));
    return;
  }
  void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) return ThrowErrno(isolate, errno, "mmap", path.c_str());
  g_mapped_file_bytes.fetch_add(size, std::memory_order_relaxed);
  std::shared_ptr<v8::BackingStore> store =
      v8::ArrayBuffer::NewBackingStore(data, size, UnmapFile, nullptr);
  args.GetReturnValue().Set(v8::ArrayBuffer::New(isolate, std::move(store)));
}

void MappedFileBytes(const Callback& args) {
  args.GetReturnValue().Set(static_cast<double>(
      g_mapped_file_bytes.load(std::memory_order_relaxed)));
}

}  // namespace mpts
