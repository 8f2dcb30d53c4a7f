// spawn.cc — spawnDetached(file, argv, cwd): starts a program in a session
// of its own whose standard input is a new pipe, and returns its pid and the
// pipe's write end. For the tree's reaper (src/shm/tree.ts), which reads that
// pipe until this process is gone.
//
// Why not child_process.spawn: libuv forks, and fork() copies the page
// tables of the whole process while holding its memory map's lock for
// writing, which stalls every other thread's page faults meanwhile. The
// reaper is spawned while a pool's first workers boot (each a new V8 isolate
// faulting in its heap), and that spawn cost their start several
// milliseconds. posix_spawn (glibc: clone with CLONE_VM|CLONE_VFORK) shares
// the memory map instead, so the only cost is the child's exec, on another
// core.
//
// The child gets what Node's spawn would give it: default signal
// dispositions (Node ignores SIGPIPE, which an exec would otherwise pass on)
// and an empty signal mask, /dev/null as stdout and stderr, `cwd` as its
// working directory (with glibc 2.29 or later, which has the file action
// for it; before, the parent's: the reaper's script changes directory
// itself), and this process's environment; `file` is looked up in PATH
// when it has no slash, as Node's spawn does. The pipe's write end is
// close-on-exec, so no other child inherits it: only this process's end
// keeps the reaper waiting. Nothing watches the child: a reaper that dies
// stays a zombie until this process exits (the caller checks /proc).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "bindings.h"
#include "errors.h"

extern char** environ;

namespace mpts {

namespace {

constexpr const char* kFileMessage =
    "The \"file\" argument must be a non-empty string without null bytes";
constexpr const char* kArgvMessage =
    "The \"argv\" argument must be a non-empty array of non-empty strings "
    "without null bytes";
constexpr const char* kCwdMessage =
    "The \"cwd\" argument must be a non-empty string without null bytes";

// A string argument without NUL bytes (throws a TypeError otherwise).
bool StringArg(v8::Isolate* isolate, v8::Local<v8::Value> value,
               const char* message, std::string* out) {
  if (!value->IsString()) {
    ThrowTypeError(isolate, message);
    return false;
  }
  v8::String::Utf8Value utf8(isolate, value);
  out->assign(*utf8, utf8.length());
  if (out->empty() || out->find('\0') != std::string::npos) {
    ThrowTypeError(isolate, message);
    return false;
  }
  return true;
}

// Frees what posix_spawn was given, on every path out.
class SpawnSetup {
 public:
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
};

}  // namespace

void SpawnDetached(const Callback& args) {
  v8::Isolate* isolate = args.GetIsolate();
  v8::Local<v8::Context> context = isolate->GetCurrentContext();
  std::string file;
  if (!StringArg(isolate, args[0], kFileMessage, &file)) return;
  if (!args[1]->IsArray()) return ThrowTypeError(isolate, kArgvMessage);
  v8::Local<v8::Array> list = args[1].As<v8::Array>();
  if (list->Length() == 0) return ThrowTypeError(isolate, kArgvMessage);
  std::vector<std::string> argv(list->Length());
  for (uint32_t i = 0; i < argv.size(); i++) {
    v8::Local<v8::Value> item;
    if (!list->Get(context, i).ToLocal(&item)) return;
    if (!StringArg(isolate, item, kArgvMessage, &argv[i])) return;
  }
  std::string cwd;
  if (!StringArg(isolate, args[2], kCwdMessage, &cwd)) return;

  std::vector<char*> argv_ptrs;
  for (std::string& arg : argv) argv_ptrs.push_back(&arg[0]);
  argv_ptrs.push_back(nullptr);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return ThrowErrno(isolate, errno, "pipe2", nullptr);
  }

  SpawnSetup setup;
  sigset_t none;
  sigset_t all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawn_file_actions_t* actions = &setup.actions;
  posix_spawnattr_t* attr = &setup.attr;
  int rc = posix_spawn_file_actions_adddup2(actions, fds[0], 0);
  if (rc == 0) {
    rc = posix_spawn_file_actions_addopen(actions, 1, "/dev/null", O_WRONLY,
                                          0);
  }
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(actions, 1, 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))
  if (rc == 0) rc = posix_spawn_file_actions_addchdir_np(actions, cwd.c_str());
#endif
  if (rc == 0) rc = posix_spawnattr_setsigmask(attr, &none);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(attr, &all);
  if (rc == 0) {
    rc = posix_spawnattr_setflags(
        attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                  POSIX_SPAWN_SETSIGDEF);
  }
  pid_t pid = -1;
  if (rc == 0) {
    rc = posix_spawnp(&pid, file.c_str(), actions, attr, argv_ptrs.data(),
                      environ);
  }
  close(fds[0]);
  if (rc != 0) {
    close(fds[1]);
    return ThrowErrno(isolate, rc, "posix_spawn", file.c_str());
  }

  v8::Local<v8::Object> result = v8::Object::New(isolate);
  result
      ->Set(context, v8::String::NewFromUtf8Literal(isolate, "pid"),
            v8::Integer::New(isolate, pid))
      .Check();
  result
      ->Set(context, v8::String::NewFromUtf8Literal(isolate, "stdin"),
            v8::Integer::New(isolate, fds[1]))
      .Check();
  args.GetReturnValue().Set(result);
}

}  // namespace mpts
