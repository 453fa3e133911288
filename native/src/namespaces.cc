// SPDX-License-Identifier: Apache-2.0
// withFreshNetworkNamespace(fn): calls fn on this thread inside a new, empty network namespace,
// then moves the thread back to the namespace it came from, whether fn returned or threw.
//
// The tc feature probe attaches a classifier to the `lo` of such a namespace, so it never touches
// an interface of the host. A network namespace belongs to the thread (unshare(2) and setns(2)
// move only the caller), so the rest of the process keeps its network while fn runs, and sockets
// fn opens (libbpf's netlink socket) live in the new namespace. When the thread leaves, nothing
// refers to the namespace any more and the kernel destroys it with its `lo`, qdisc and filters;
// a crash inside fn cannot leave them behind either.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"
#include "handles.h"

namespace periscope {

namespace {

// Moves this thread back, or stops the process: a JavaScript thread stranded in an empty network
// namespace would break every later connection in ways nobody could trace back to here.
void Return(int original) {
  if (setns(original, CLONE_NEWNET) != 0) {
    Napi::Error::Fatal("withFreshNetworkNamespace", "setns back to the original network namespace failed");
  }
  close(original);
}

}  // namespace

Napi::Value WithFreshNetworkNamespace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "withFreshNetworkNamespace expects a function");
  int original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original < 0) ThrowBpfError(env, "withFreshNetworkNamespace: open /proc/thread-self/ns/net (is /proc mounted?)", LastErrno());
  if (unshare(CLONE_NEWNET) != 0) {
    int err = errno;
    close(original);
    ThrowBpfError(env, "withFreshNetworkNamespace: unshare(CLONE_NEWNET)", err);
  }
  Napi::Value result;
  try {
    result = info[0].As<Napi::Function>().Call({});
  } catch (...) {
    Return(original);
    throw;
  }
  Return(original);
  return result;
}

}  // namespace periscope
