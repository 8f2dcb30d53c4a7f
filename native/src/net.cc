// net.cc — TCP settings Node's net module does not reach.
//
// `socket.setKeepAlive(true, idle)` sets only when the first keepalive probe
// goes; how often the next ones go and how many may go unanswered stay the
// system's (Linux: 75 s and 9), so a peer that vanished from the network
// (powered off, unplugged) is noticed after some 11 minutes. And keepalive
// probes only an idle connection: data sent and never acknowledged is
// retried for some 15 minutes instead. TCP_KEEPINTVL, TCP_KEEPCNT and
// TCP_USER_TIMEOUT bound both (a user timeout of 0 keeps the system's: see
// src/connection/keepalive.ts for which side sets one).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <climits>

#include "args.h"
#include "bindings.h"

namespace mpts {

// tuneTcpKeepalive(fd, intervalSeconds, probes, userTimeoutMs) -> true when
// the socket took all three (false for a socket that is not TCP).
// userTimeoutMs 0: the system's behaviour (retries for some 15 minutes).
void TuneTcpKeepalive(const Callback& args) {
  v8::Isolate* isolate = args.GetIsolate();
  int64_t fd;
  int64_t interval;
  int64_t probes;
  int64_t user_timeout;
  if (!IntegerArg(isolate, args[0], "fd", 0, INT_MAX, &fd)) return;
  if (!IntegerArg(isolate, args[1], "intervalSeconds", 1, 32767, &interval)) return;
  if (!IntegerArg(isolate, args[2], "probes", 1, 127, &probes)) return;
  if (!IntegerArg(isolate, args[3], "userTimeoutMs", 0, INT_MAX, &user_timeout)) return;
  const int s = static_cast<int>(fd);
  const int interval_value = static_cast<int>(interval);
  const int probes_value = static_cast<int>(probes);
  const unsigned int user_timeout_value = static_cast<unsigned int>(user_timeout);
  const bool ok =
      setsockopt(s, IPPROTO_TCP, TCP_KEEPINTVL, &interval_value, sizeof interval_value) == 0 &&
      setsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, &probes_value, sizeof probes_value) == 0 &&
      setsockopt(s, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_value, sizeof user_timeout_value) == 0;
  args.GetReturnValue().Set(ok);
}

}  // namespace mpts
