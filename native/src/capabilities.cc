// SPDX-License-Identifier: Apache-2.0
// setProcessCredentials(keep, uid, gid, timeoutMs?): lowers the privileges of EVERY thread of the
// process: its uids, gids and supplementary groups become `uid`/`gid` (and none), `no_new_privs`
// is set, and its capabilities become `keep` (permitted, effective and bounding; inheritable and
// ambient empty).
//
// setAmbientCapabilities(mask): makes `mask` the calling thread's inheritable and ambient sets,
// so that a process it starts next (fork, then execve) keeps those capabilities. After the switch
// to a non-zero uid, execve leaves a program with only its ambient capabilities; the kernel
// refuses a capability the thread does not hold (in permitted) and no_new_privs does not block
// ambient ones, so a child never gets more than the thread has. `mask` 0 lowers them again.
//
// Linux keeps credentials per thread, so setresuid(2), capset(2) and PR_SET_NO_NEW_PRIVS change
// only the calling thread, and by the time the runtime drops privileges V8, libuv and isolated-vm
// have long started theirs. This does what glibc's setuid() does ("setxid broadcast"): it signals every thread listed in
// /proc/self/task with tgkill, each thread's handler makes the syscalls for itself, and the caller
// waits for every acknowledgement and re-scans for threads born meanwhile. libpsx cannot do this,
// as it only knows threads created through its pthread_create wrapper, after it was loaded.
//
// The broadcast signal is the kernel's first real-time signal (32, glibc's SIGCANCEL), not a
// spare one from SIGRTMIN(): glibc keeps 32 unblockable (pthread_sigmask filters it out), and
// Node's SignalInspector thread blocks every signal it is allowed to, so only a glibc-internal
// signal reaches it. glibc's sigaction() refuses internal signals, so the handler is installed
// with the raw rt_sigaction syscall, and the previous disposition is restored afterwards. Node
// never calls pthread_cancel, the only user of that signal.
#include <dirent.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "errors.h"
#include "handles.h"

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "capabilities.cc knows the kernel's struct sigaction only for x86_64 and aarch64"
#endif

namespace periscope {

namespace {

constexpr int kBroadcastSignal = 32;
constexpr size_t kMaxThreads = 4096;
constexpr uint32_t kDefaultTimeoutMs = 2000;

// The kernel's struct sigaction (with sa_restorer, as on x86_64 and aarch64), for SYS_rt_sigaction.
struct KernelSigaction {
  void (*handler)(int, siginfo_t*, void*);
  unsigned long flags;
  void (*restorer)();
  uint64_t mask;
};

int RawSigaction(int signal, const KernelSigaction* action, KernelSigaction* old) {
  return static_cast<int>(syscall(SYS_rt_sigaction, signal, action, old, sizeof(uint64_t)));
}

enum SlotState : int { kEmpty = 0, kSent, kChanged, kFailed, kExited };

// One thread's part of a broadcast. Only lock-free atomics and plain fields written before the
// state's release store, so the handler stays async-signal-safe.
struct Slot {
  std::atomic<pid_t> tid{0};
  std::atomic<int> state{kEmpty};
  int err = 0;
  const char* op = nullptr;
};

Slot slots[kMaxThreads];
std::atomic<size_t> slot_count{0};
// What every thread applies; written under broadcast_mutex before any signal is sent.
std::atomic<uint64_t> target_keep{0};
std::atomic<uid_t> target_uid{0};
std::atomic<gid_t> target_gid{0};
std::atomic<int> target_last_cap{-1};
std::mutex broadcast_mutex;
// True from installation until every thread acknowledged. After a timeout the handler stays
// installed, since restoring the previous action of signal 32 (SIG_DFL terminates) could kill
// the process when the late delivery lands; a later call reuses it.
bool handler_installed = false;
KernelSigaction original_action{};

pid_t Gettid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

// Runs on the thread whose credentials it changes; async-signal-safe. Returns 0 or an errno,
// naming the failed step in `op`. The order matters: each step needs a capability that a later
// one removes.
int ApplyToThisThread(const char** op) {
  uint64_t keep = target_keep.load(std::memory_order_acquire);
  int last_cap = target_last_cap.load(std::memory_order_acquire);
  uid_t uid = target_uid.load(std::memory_order_acquire);
  gid_t gid = target_gid.load(std::memory_order_acquire);
  // the bounding set first: dropping from it needs CAP_SETPCAP, which capset removes below
  for (int cap = 0; cap <= last_cap; cap++) {
    if (cap < 64 && ((keep >> cap) & 1) != 0) continue;
    int held = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (held < 0) return *op = "prctl(PR_CAPBSET_READ)", errno;
    if (held == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return *op = "prctl(PR_CAPBSET_DROP)", errno;
  }
  // leaving uid 0 clears the permitted set unless keepcaps is on; capset below then trims it
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return *op = "prctl(PR_SET_KEEPCAPS)", errno;
  // raw syscalls: glibc's wrappers would run their own broadcast to every thread from here
  if (syscall(SYS_setgroups, 0, nullptr) != 0) return *op = "setgroups", errno;
  if (syscall(SYS_setresgid, gid, gid, gid) != 0) return *op = "setresgid", errno;
  if (syscall(SYS_setresuid, uid, uid, uid) != 0) return *op = "setresuid", errno;
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return *op = "prctl(PR_SET_KEEPCAPS)", errno;
  // so that no exec (setuid binary, file capabilities) can give back what was dropped
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return *op = "prctl(PR_SET_NO_NEW_PRIVS)", errno;
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) return *op = "prctl(PR_CAP_AMBIENT_CLEAR_ALL)", errno;
  // setresuid cleared the effective set; this raises `keep` again from the permitted set
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  data[0].effective = data[0].permitted = static_cast<uint32_t>(keep);
  data[1].effective = data[1].permitted = static_cast<uint32_t>(keep >> 32);
  if (syscall(SYS_capset, &header, data) != 0) return *op = "capset", errno;
  return 0;
}

void Record(Slot& slot, int err, const char* op) {
  slot.err = err;
  slot.op = op;
  slot.state.store(err == 0 ? kChanged : kFailed, std::memory_order_release);
}

void OnBroadcast(int, siginfo_t* info, void*) {
  // only a tgkill from this process counts; a pthread_cancel during the broadcast would be taken
  // for one too, but Node never cancels threads
  if (info->si_code != SI_TKILL || info->si_pid != getpid()) return;
  int saved_errno = errno;
  const char* op = nullptr;
  int err = ApplyToThisThread(&op);
  pid_t tid = Gettid();
  size_t count = slot_count.load(std::memory_order_acquire);
  for (size_t i = 0; i < count; i++) {
    if (slots[i].tid.load(std::memory_order_acquire) == tid && slots[i].state.load(std::memory_order_acquire) == kSent) {
      Record(slots[i], err, op);
      break;
    }
  }
  errno = saved_errno;
}

// glibc's sigaction() supplies the architecture's signal-return trampoline (sa_restorer), which
// the raw syscall needs too. It is borrowed by installing the handler on an unused real-time
// signal through glibc for a moment and reading back what the kernel was given.
KernelSigaction HandlerAction(Napi::Env env) {
  for (int donor = SIGRTMAX; donor >= SIGRTMIN; donor--) {
    struct sigaction previous {};
    if (sigaction(donor, nullptr, &previous) != 0 || previous.sa_handler != SIG_DFL || (previous.sa_flags & SA_SIGINFO) != 0) continue;
    struct sigaction ours {};
    ours.sa_sigaction = OnBroadcast;
    ours.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&ours.sa_mask);
    if (sigaction(donor, &ours, nullptr) != 0) ThrowBpfError(env, "setProcessCredentials: sigaction", LastErrno());
    KernelSigaction action{};
    int read = RawSigaction(donor, nullptr, &action);
    int err = errno;
    sigaction(donor, &previous, nullptr);
    if (read != 0) ThrowBpfError(env, "setProcessCredentials: rt_sigaction", err);
    return action;
  }
  ThrowBpfError(env, "setProcessCredentials: every real-time signal has a handler, none can lend glibc's sa_restorer", EBUSY);
}

int LastCap(Napi::Env env) {
  FILE* file = fopen("/proc/sys/kernel/cap_last_cap", "r");
  if (file == nullptr) ThrowBpfError(env, "setProcessCredentials: open /proc/sys/kernel/cap_last_cap (is /proc mounted?)", LastErrno());
  int last = -1;
  int scanned = fscanf(file, "%d", &last);
  fclose(file);
  if (scanned != 1 || last < 0) ThrowBpfError(env, "setProcessCredentials: parse /proc/sys/kernel/cap_last_cap", EINVAL);
  return last;
}

std::vector<pid_t> Threads(Napi::Env env) {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) ThrowBpfError(env, "setProcessCredentials: opendir /proc/self/task (is /proc mounted?)", LastErrno());
  std::vector<pid_t> tids;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    tids.push_back(static_cast<pid_t>(strtol(entry->d_name, nullptr, 10)));
  }
  closedir(dir);
  return tids;
}

bool Known(pid_t tid) {
  size_t count = slot_count.load(std::memory_order_relaxed);
  for (size_t i = 0; i < count; i++)
    if (slots[i].tid.load(std::memory_order_relaxed) == tid) return true;
  return false;
}

bool ThreadExists(pid_t tid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d", tid);
  return access(path, F_OK) == 0;
}

uint64_t NowMs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000 + static_cast<uint64_t>(now.tv_nsec) / 1000000;
}

// Sends the signal to every thread not yet asked; returns how many were new.
size_t SignalNewThreads(Napi::Env env, pid_t pid) {
  size_t fresh = 0;
  for (pid_t tid : Threads(env)) {
    if (Known(tid)) continue;
    size_t index = slot_count.load(std::memory_order_relaxed);
    if (index == kMaxThreads) ThrowBpfError(env, "setProcessCredentials: more threads than the broadcast can track (4096)", E2BIG);
    Slot& slot = slots[index];
    slot.err = 0;
    slot.op = nullptr;
    slot.tid.store(tid, std::memory_order_relaxed);
    slot.state.store(kSent, std::memory_order_relaxed);
    slot_count.store(index + 1, std::memory_order_release);
    fresh++;
    if (syscall(SYS_tgkill, pid, tid, kBroadcastSignal) != 0) {
      int err = errno;
      if (err == ESRCH) slot.state.store(kExited, std::memory_order_release);
      else Record(slot, err, "tgkill");
    }
  }
  return fresh;
}

// Waits until no slot is still waiting for its thread, or the deadline; true when none is.
bool AwaitAcknowledgements(uint64_t deadline) {
  for (;;) {
    bool waiting = false;
    size_t count = slot_count.load(std::memory_order_acquire);
    for (size_t i = 0; i < count; i++) {
      Slot& slot = slots[i];
      if (slot.state.load(std::memory_order_acquire) != kSent) continue;
      int expected = kSent;
      if (!ThreadExists(slot.tid.load(std::memory_order_relaxed))) slot.state.compare_exchange_strong(expected, kExited);
      else waiting = true;
    }
    if (!waiting) return true;
    if (NowMs() >= deadline) return false;
    timespec pause{0, 200 * 1000};
    nanosleep(&pause, nullptr);
  }
}

const char* StateName(int state) {
  switch (state) {
    case kChanged: return "changed";
    case kFailed: return "failed";
    case kExited: return "exited";
    default: return "pending";
  }
}

}  // namespace

Napi::Value SetProcessCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBigInt()) throw Napi::TypeError::New(env, "setProcessCredentials expects the capabilities to keep as a bigint");
  bool lossless = false;
  uint64_t keep = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw Napi::TypeError::New(env, "setProcessCredentials expects a capability mask that fits in 64 bits");
  if (!info[1].IsNumber() || !info[2].IsNumber()) throw Napi::TypeError::New(env, "setProcessCredentials expects the uid and gid to switch to");
  uid_t uid = info[1].As<Napi::Number>().Uint32Value();
  gid_t gid = info[2].As<Napi::Number>().Uint32Value();
  uint32_t timeout_ms = info[3].IsNumber() ? info[3].As<Napi::Number>().Uint32Value() : kDefaultTimeoutMs;

  std::lock_guard<std::mutex> lock(broadcast_mutex);
  target_last_cap.store(LastCap(env), std::memory_order_release);
  target_keep.store(keep, std::memory_order_release);
  target_uid.store(uid, std::memory_order_release);
  target_gid.store(gid, std::memory_order_release);
  slot_count.store(0, std::memory_order_release);

  pid_t pid = getpid();
  pid_t self = Gettid();
  // the calling thread changes itself directly; it is slot 0, so the broadcast skips it
  slots[0].tid.store(self, std::memory_order_relaxed);
  slots[0].state.store(kSent, std::memory_order_relaxed);
  slot_count.store(1, std::memory_order_release);
  const char* self_op = nullptr;
  Record(slots[0], ApplyToThisThread(&self_op), self_op);

  if (!handler_installed) {
    KernelSigaction action = HandlerAction(env);
    if (RawSigaction(kBroadcastSignal, &action, &original_action) != 0) ThrowBpfError(env, "setProcessCredentials: rt_sigaction(32)", LastErrno());
    handler_installed = true;
  }
  uint64_t deadline = NowMs() + timeout_ms;
  bool complete = false;
  // re-scan until a pass finds no thread that was born while the others were being changed
  while (SignalNewThreads(env, pid) > 0) {
    complete = AwaitAcknowledgements(deadline);
    if (!complete) break;
  }
  if (complete && RawSigaction(kBroadcastSignal, &original_action, nullptr) == 0) handler_installed = false;

  size_t count = slot_count.load(std::memory_order_acquire);
  Napi::Array results = Napi::Array::New(env, count);
  for (size_t i = 0; i < count; i++) {
    Slot& slot = slots[i];
    int state = slot.state.load(std::memory_order_acquire);
    Napi::Object result = Napi::Object::New(env);
    pid_t tid = slot.tid.load(std::memory_order_relaxed);
    result.Set("tid", tid);
    result.Set("result", StateName(state));
    if (state == kFailed) {
      result.Set("error", MakeBpfError(env, BpfFailure{std::string(slot.op) + " on thread " + std::to_string(tid), slot.err, ""}).Value());
    }
    results.Set(static_cast<uint32_t>(i), result);
  }
  return results;
}

Napi::Value SetAmbientCapabilities(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBigInt()) throw Napi::TypeError::New(env, "setAmbientCapabilities expects the capabilities as a bigint");
  bool lossless = false;
  uint64_t mask = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw Napi::TypeError::New(env, "setAmbientCapabilities expects a capability mask that fits in 64 bits");
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) ThrowBpfError(env, "setAmbientCapabilities: capget", LastErrno());
  // a capability enters the ambient set only while it is in the inheritable set too
  data[0].inheritable = static_cast<uint32_t>(mask);
  data[1].inheritable = static_cast<uint32_t>(mask >> 32);
  if (syscall(SYS_capset, &header, data) != 0) ThrowBpfError(env, "setAmbientCapabilities: capset (inheritable)", LastErrno());
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) ThrowBpfError(env, "setAmbientCapabilities: prctl(PR_CAP_AMBIENT_CLEAR_ALL)", LastErrno());
  for (unsigned long cap = 0; cap < 64; cap++) {
    if (((mask >> cap) & 1) == 0) continue;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) {
      ThrowBpfError(env, "setAmbientCapabilities: prctl(PR_CAP_AMBIENT_RAISE, " + std::to_string(cap) + ")", LastErrno());
    }
  }
  return env.Undefined();
}

}  // namespace periscope
