// SPDX-License-Identifier: Apache-2.0
#include <linux/perf_event.h>
#include <bpf/bpf.h>
#include <net/if.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cerrno>
#include <cstddef>
#include <vector>

#include "errors.h"
#include "handles.h"

namespace periscope {

Napi::FunctionReference Program::constructor;

Napi::Function Program::Init(Napi::Env env) {
  Napi::Function fn = DefineClass(env, "BpfProgram",
                                  {
                                      InstanceMethod<&Program::Describe>("describe"),
                                      InstanceMethod<&Program::Fd>("fd"),
                                      InstanceAccessor<&Program::GetAutoload, &Program::SetAutoload>("autoload"),
                                      InstanceMethod<&Program::SetExpectedAttachType>("setExpectedAttachType"),
                                      InstanceMethod<&Program::SetAttachTarget>("setAttachTarget"),
                                      InstanceMethod<&Program::AttachTracepoint>("attachTracepoint"),
                                      InstanceMethod<&Program::AttachRawTracepoint>("attachRawTracepoint"),
                                      InstanceMethod<&Program::AttachTrace>("attachTrace"),
                                      InstanceMethod<&Program::AttachKprobe>("attachKprobe"),
                                      InstanceMethod<&Program::AttachUprobe>("attachUprobe"),
                                      InstanceMethod<&Program::AttachUprobeMulti>("attachUprobeMulti"),
                                      InstanceMethod<&Program::AttachPerfEvent>("attachPerfEvent"),
                                      InstanceMethod<&Program::AttachCgroup>("attachCgroup"),
                                      InstanceMethod<&Program::AttachTc>("attachTc"),
                                      InstanceMethod<&Program::AttachIter>("attachIter"),
                                      InstanceMethod<&Program::TestRun>("testRun"),
                                      InstanceMethod<&Program::RunStats>("runStats"),
                                  });
  constructor = Napi::Persistent(fn);
  return fn;
}

Program::Program(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Program>(info) {}

void Program::Bind(Napi::Object owner, Object* object, bpf_program* prog) {
  owner_ = Napi::Persistent(owner);
  object_ = object;
  prog_ = prog;
}

bpf_program* Program::handle(Napi::Env env) {
  object_->handle(env);
  return prog_;
}

static Napi::Value OrNull(Napi::Env env, const char* text) {
  return text == nullptr ? env.Null() : Napi::String::New(env, text);
}

Napi::Value Program::Describe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = handle(env);
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", bpf_program__name(prog));
  out.Set("section", bpf_program__section_name(prog));
  out.Set("type", OrNull(env, libbpf_bpf_prog_type_str(bpf_program__type(prog))));
  out.Set("attachType", OrNull(env, AttachTypeName(bpf_program__expected_attach_type(prog))));
  out.Set("instructions", Napi::Number::New(env, bpf_program__insn_cnt(prog)));
  return out;
}

Napi::Value Program::Fd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), bpf_program__fd(handle(info.Env())));
}

Napi::Value Program::GetAutoload(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), bpf_program__autoload(handle(info.Env())));
}

void Program::SetAutoload(const Napi::CallbackInfo& info, const Napi::Value& value) {
  int err = bpf_program__set_autoload(handle(info.Env()), value.ToBoolean());
  if (err != 0) ThrowBpfError(info.Env(), "bpf_program__set_autoload", err);
}

// setExpectedAttachType(type): before load; the kernel checks it at load and again at attach.
Napi::Value Program::SetExpectedAttachType(const Napi::CallbackInfo& info) {
  int type = info[0].As<Napi::Number>().Int32Value();
  int err = bpf_program__set_expected_attach_type(handle(info.Env()), static_cast<bpf_attach_type>(type));
  if (err != 0) ThrowBpfError(info.Env(), "bpf_program__set_expected_attach_type " + std::to_string(type), err);
  return info.Env().Undefined();
}

// setAttachTarget(functionName): retargets fentry/fexit/tp_btf programs before load.
Napi::Value Program::SetAttachTarget(const Napi::CallbackInfo& info) {
  std::string target = info[0].As<Napi::String>();
  int err = bpf_program__set_attach_target(handle(info.Env()), 0, target.c_str());
  if (err != 0) ThrowBpfError(info.Env(), "bpf_program__set_attach_target " + target, err);
  return info.Env().Undefined();
}

static uint64_t CookieArg(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined()) return 0;
  bool lossless;
  return info[index].As<Napi::BigInt>().Uint64Value(&lossless);
}

Napi::Value Program::Wrap(Napi::Env env, bpf_link* link, const std::string& op, const std::string& log) {
  int err = libbpf_get_error(link);
  if (link == nullptr || err != 0) ThrowBpfError(env, op, err != 0 ? err : LastErrno(), log);
  Napi::Object js = Link::constructor.New({});
  Link::Unwrap(js)->BindLink(object_, link, op.substr(0, op.find(' ')));
  object_->adopt(env, Link::Unwrap(js), js);
  return js;
}

// attachTracepoint(category, name, cookie?)
Napi::Value Program::AttachTracepoint(const Napi::CallbackInfo& info) {
  bpf_program* prog = handle(info.Env());
  std::string category = info[0].As<Napi::String>(), name = info[1].As<Napi::String>();
  LIBBPF_OPTS(bpf_tracepoint_opts, opts, .bpf_cookie = CookieArg(info, 2));
  LibbpfLogCapture capture;
  errno = 0;
  bpf_link* link = bpf_program__attach_tracepoint_opts(prog, category.c_str(), name.c_str(), &opts);
  return Wrap(info.Env(), link, "tracepoint " + category + "/" + name, capture.take());
}

// attachRawTracepoint(name)
Napi::Value Program::AttachRawTracepoint(const Napi::CallbackInfo& info) {
  bpf_program* prog = handle(info.Env());
  std::string name = info[0].As<Napi::String>();
  LibbpfLogCapture capture;
  errno = 0;
  bpf_link* link = bpf_program__attach_raw_tracepoint(prog, name.c_str());
  return Wrap(info.Env(), link, "raw_tracepoint " + name, capture.take());
}

// attachTrace(cookie?): fentry/fexit/tp_btf/fmod_ret, target fixed at load time.
Napi::Value Program::AttachTrace(const Napi::CallbackInfo& info) {
  bpf_program* prog = handle(info.Env());
  LIBBPF_OPTS(bpf_trace_opts, opts, .cookie = CookieArg(info, 0));
  LibbpfLogCapture capture;
  errno = 0;
  bpf_link* link = bpf_program__attach_trace_opts(prog, &opts);
  return Wrap(info.Env(), link, std::string("trace ") + bpf_program__section_name(prog), capture.take());
}

// attachKprobe(retprobe, functionName, offset, cookie?)
Napi::Value Program::AttachKprobe(const Napi::CallbackInfo& info) {
  bpf_program* prog = handle(info.Env());
  bool retprobe = info[0].ToBoolean();
  std::string func = info[1].As<Napi::String>();
  LIBBPF_OPTS(bpf_kprobe_opts, opts, .bpf_cookie = CookieArg(info, 3),
              .offset = static_cast<size_t>(info[2].As<Napi::Number>().Int64Value()), .retprobe = retprobe);
  LibbpfLogCapture capture;
  errno = 0;
  bpf_link* link = bpf_program__attach_kprobe_opts(prog, func.c_str(), &opts);
  return Wrap(info.Env(), link, std::string(retprobe ? "kretprobe " : "kprobe ") + func, capture.take());
}

// attachUprobe(retprobe, pid, binaryPath, functionName | null, offset, cookie?)
Napi::Value Program::AttachUprobe(const Napi::CallbackInfo& info) {
  bpf_program* prog = handle(info.Env());
  bool retprobe = info[0].ToBoolean();
  pid_t pid = info[1].As<Napi::Number>().Int32Value();
  std::string binary = info[2].As<Napi::String>();
  std::string func = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
  size_t offset = static_cast<size_t>(info[4].As<Napi::Number>().Int64Value());
  LIBBPF_OPTS(bpf_uprobe_opts, opts, .bpf_cookie = CookieArg(info, 5), .retprobe = retprobe,
              .func_name = func.empty() ? nullptr : func.c_str());
  LibbpfLogCapture capture;
  errno = 0;
  bpf_link* link = bpf_program__attach_uprobe_opts(prog, pid, binary.c_str(), offset, &opts);
  std::string where = binary + ":" + (func.empty() ? std::to_string(offset) : func);
  return Wrap(info.Env(), link, std::string(retprobe ? "uretprobe " : "uprobe ") + where, capture.take());
}

// The uprobe_multi fields of union bpf_attr's link_create, laid out as Linux 6.6 added them (and
// 6.18 still has them, per its BTF); Debian 12's uapi headers (6.1) and libbpf 1.1 predate them.
struct UprobeMultiLinkCreate {
  __u32 prog_fd;
  __u32 target_fd;
  __u32 attach_type;
  __u32 flags;
  __aligned_u64 path;
  __aligned_u64 offsets;
  __aligned_u64 ref_ctr_offsets;
  __aligned_u64 cookies;
  __u32 cnt;
  __u32 uprobe_flags;
  __u32 pid;
};
static_assert(offsetof(UprobeMultiLinkCreate, path) == 16 && offsetof(UprobeMultiLinkCreate, pid) == 56);
constexpr __u32 kTraceUprobeMulti = 48;        // BPF_TRACE_UPROBE_MULTI
constexpr __u32 kUprobeMultiReturn = 1U << 0;  // BPF_F_UPROBE_MULTI_RETURN

static __u64 Address(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// attachUprobeMulti(retprobe, pid, binaryPath, offsets: number[], cookies?: bigint[]): one
// uprobe_multi link on file offsets of a binary (pid 0: every process). Unlike a uprobe made
// through the uprobe PMU, it needs no CAP_SYS_ADMIN; the program must have been loaded with
// expected attach type trace_uprobe_multi.
Napi::Value Program::AttachUprobeMulti(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = handle(env);
  bool retprobe = info[0].ToBoolean();
  uint32_t pid = info[1].As<Napi::Number>().Uint32Value();
  std::string binary = info[2].As<Napi::String>();
  Napi::Array offsets_arg = info[3].As<Napi::Array>();
  std::vector<__u64> offsets(offsets_arg.Length());
  for (uint32_t i = 0; i < offsets.size(); i++) offsets[i] = static_cast<__u64>(offsets_arg.Get(i).As<Napi::Number>().Int64Value());
  std::vector<__u64> cookies;
  if (info.Length() > 4 && info[4].IsArray()) {
    Napi::Array cookies_arg = info[4].As<Napi::Array>();
    for (uint32_t i = 0; i < cookies_arg.Length(); i++) {
      bool lossless;
      cookies.push_back(cookies_arg.Get(i).As<Napi::BigInt>().Uint64Value(&lossless));
    }
  }
  UprobeMultiLinkCreate attr{};
  attr.prog_fd = static_cast<__u32>(bpf_program__fd(prog));
  attr.attach_type = kTraceUprobeMulti;
  attr.path = Address(binary.c_str());
  attr.offsets = Address(offsets.data());
  attr.cookies = cookies.empty() ? 0 : Address(cookies.data());
  attr.cnt = static_cast<__u32>(offsets.size());
  attr.uprobe_flags = retprobe ? kUprobeMultiReturn : 0;
  attr.pid = pid;
  std::string op = std::string(retprobe ? "uretprobe_multi " : "uprobe_multi ") + binary;
  int fd = static_cast<int>(syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof attr));
  if (fd < 0) ThrowBpfError(env, "bpf_link_create " + op, errno);
  Napi::Object js = Link::constructor.New({});
  Link::Unwrap(js)->BindFd(object_, fd, retprobe ? "uretprobe_multi" : "uprobe_multi");
  object_->adopt(env, Link::Unwrap(js), js);
  return js;
}

// attachPerfEvent(type, config, frequency, period, pid, cpu, cookie?): opens the perf event and
// attaches in one step so the link owns the perf fd (libbpf closes it on detach).
Napi::Value Program::AttachPerfEvent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = handle(env);
  perf_event_attr attr{};
  attr.size = sizeof attr;
  attr.type = info[0].As<Napi::Number>().Uint32Value();
  attr.config = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
  int64_t frequency = info[2].As<Napi::Number>().Int64Value();
  if (frequency > 0) {
    attr.freq = 1;
    attr.sample_freq = static_cast<uint64_t>(frequency);
  } else {
    attr.sample_period = static_cast<uint64_t>(info[3].As<Napi::Number>().Int64Value());
  }
  pid_t pid = info[4].As<Napi::Number>().Int32Value();
  int cpu = info[5].As<Napi::Number>().Int32Value();
  int pfd = static_cast<int>(syscall(__NR_perf_event_open, &attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC));
  std::string op = "perf_event type " + std::to_string(attr.type) + " config " + std::to_string(attr.config) +
                   " cpu " + std::to_string(cpu);
  if (pfd < 0) ThrowBpfError(env, "perf_event_open " + op, errno);
  LIBBPF_OPTS(bpf_perf_event_opts, opts, .bpf_cookie = CookieArg(info, 6));
  LibbpfLogCapture capture;
  errno = 0;
  bpf_link* link = bpf_program__attach_perf_event_opts(prog, pfd, &opts);
  if (link == nullptr || libbpf_get_error(link) != 0) {
    int err = libbpf_get_error(link) != 0 ? static_cast<int>(libbpf_get_error(link)) : LastErrno();
    close(pfd);
    ThrowBpfError(env, op, err, capture.take());
  }
  return Wrap(env, link, op, capture.take());
}

// attachCgroup(cgroupFd)
Napi::Value Program::AttachCgroup(const Napi::CallbackInfo& info) {
  bpf_program* prog = handle(info.Env());
  int cgroup_fd = info[0].As<Napi::Number>().Int32Value();
  LibbpfLogCapture capture;
  errno = 0;
  bpf_link* link = bpf_program__attach_cgroup(prog, cgroup_fd);
  return Wrap(info.Env(), link, "cgroup " + std::string(bpf_program__section_name(prog)), capture.take());
}

// attachTc(ifindex, egress, priority): the classic clsact hook, which libbpf 1.1 can do without
// tcx; the hook is created when missing and left in place (other filters may share it).
Napi::Value Program::AttachTc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = handle(env);
  int ifindex = info[0].As<Napi::Number>().Int32Value();
  bool egress = info[1].ToBoolean();
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = egress ? BPF_TC_EGRESS : BPF_TC_INGRESS);
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = bpf_program__fd(prog),
              .priority = info[2].As<Napi::Number>().Uint32Value());
  std::string op = std::string("tc ") + (egress ? "egress" : "ingress") + " ifindex " + std::to_string(ifindex);
  LibbpfLogCapture capture;
  int err = bpf_tc_hook_create(&hook);
  if (err != 0 && err != -EEXIST) ThrowBpfError(env, "bpf_tc_hook_create " + op, err, capture.take());
  err = bpf_tc_attach(&hook, &opts);
  if (err != 0) ThrowBpfError(env, "bpf_tc_attach " + op, err, capture.take());
  Napi::Object js = Link::constructor.New({});
  Link::Unwrap(js)->BindTc(object_, hook, opts);
  object_->adopt(env, Link::Unwrap(js), js);
  return js;
}

// attachIter(pid): an iterator link, which runs nothing until an instance is created from it
// (Link.iterCreate); a pid > 0 limits a task iterator (task, task_file, task_vma) to that process.
Napi::Value Program::AttachIter(const Napi::CallbackInfo& info) {
  bpf_program* prog = handle(info.Env());
  uint32_t pid = info[0].As<Napi::Number>().Uint32Value();
  union bpf_iter_link_info link_info{};
  LIBBPF_OPTS(bpf_iter_attach_opts, opts);
  std::string op = std::string("iter ") + bpf_program__name(prog);
  if (pid > 0) {
    link_info.task.pid = pid;
    opts.link_info = &link_info;
    opts.link_info_len = sizeof link_info;
    op += " pid " + std::to_string(pid);
  }
  LibbpfLogCapture capture;
  errno = 0;
  bpf_link* link = bpf_program__attach_iter(prog, &opts);
  return Wrap(info.Env(), link, op, capture.take());
}

// testRun(ctxIn?: Uint8Array, repeat?) -> retval: runs a syscall/raw_tp program in the caller's
// context, which is how the loopback generator produces records on demand.
Napi::Value Program::TestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = handle(env);
  LIBBPF_OPTS(bpf_test_run_opts, opts);
  Bytes ctx{nullptr, 0};
  if (info.Length() > 0 && !info[0].IsUndefined() && !info[0].IsNull()) ctx = ArgBytes(info, 0, "context");
  opts.ctx_in = ctx.data;
  opts.ctx_size_in = static_cast<__u32>(ctx.size);
  if (info.Length() > 1 && info[1].IsNumber()) opts.repeat = info[1].As<Napi::Number>().Uint32Value();
  int err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts);
  if (err != 0) ThrowBpfError(env, std::string("bpf_prog_test_run ") + bpf_program__name(prog), errno);
  return Napi::Number::New(env, opts.retval);
}

// runStats() -> { id, runTimeNs, runCount, recursionMisses }: what the kernel counted for this
// program while BPF stats were on (enableStats). Holding the program's fd is enough to read them;
// the kernel fills these fields before the ones that need CAP_BPF. Numbers, not bigints: a double
// is exact to 2^53 ns, 104 days of one program's run time, and the caller reads them per collection.
Napi::Value Program::RunStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = handle(env);
  bpf_prog_info prog_info{};
  __u32 len = sizeof prog_info;
  if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &prog_info, &len) != 0) {
    ThrowBpfError(env, std::string("bpf_obj_get_info_by_fd program ") + bpf_program__name(prog), errno);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("id", Napi::Number::New(env, prog_info.id));
  out.Set("runTimeNs", Napi::Number::New(env, static_cast<double>(prog_info.run_time_ns)));
  out.Set("runCount", Napi::Number::New(env, static_cast<double>(prog_info.run_cnt)));
  out.Set("recursionMisses", Napi::Number::New(env, static_cast<double>(prog_info.recursion_misses)));
  return out;
}

// enableStats(type) -> fd: turns on the kernel's BPF stats of `type` (BPF_STATS_RUN_TIME = 0) for
// every program while the fd is open; closing it turns them back off unless another holder, or the
// kernel.bpf_stats_enabled sysctl, keeps them on. Needs CAP_SYS_ADMIN.
Napi::Value EnableStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int type = info[0].As<Napi::Number>().Int32Value();
  int fd = bpf_enable_stats(static_cast<bpf_stats_type>(type));
  if (fd < 0) ThrowBpfError(env, "bpf_enable_stats " + std::to_string(type), fd == -1 ? errno : -fd);
  return Napi::Number::New(env, fd);
}

}  // namespace periscope
