// SPDX-License-Identifier: Apache-2.0
// Kernel feature probes that libbpf answers by loading tiny programs or creating tiny maps.
// Attach tests (can a kprobe or fentry really attach here?) live in TypeScript, which loads
// bpf/lib/probes.bpf.o through the ordinary object API.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>

#include "errors.h"
#include "handles.h"

namespace periscope {

// Types the kernel has and libbpf 1.1 predates, as newer libbpf names them, in uapi order from
// the first one libbpf 1.1 lacks (include/uapi/linux/bpf.h); enough for what Periscope uses.
constexpr int kFirstNewAttachType = 44;  // BPF_STRUCT_OPS
constexpr const char* kNewAttachTypes[] = {"struct_ops", "netfilter", "tcx_ingress", "tcx_egress", "trace_uprobe_multi"};
constexpr int kFirstNewLinkType = 10;  // BPF_LINK_TYPE_NETFILTER
constexpr const char* kNewLinkTypes[] = {"netfilter", "tcx", "uprobe_multi"};

template <size_t N>
static const char* NewerName(int type, int first, const char* const (&names)[N]) {
  return type >= first && type < first + static_cast<int>(N) ? names[type - first] : nullptr;
}

const char* AttachTypeName(int type) {
  const char* name = libbpf_bpf_attach_type_str(static_cast<bpf_attach_type>(type));
  return name != nullptr ? name : NewerName(type, kFirstNewAttachType, kNewAttachTypes);
}

const char* LinkTypeName(int type) {
  const char* name = libbpf_bpf_link_type_str(static_cast<bpf_link_type>(type));
  return name != nullptr ? name : NewerName(type, kFirstNewLinkType, kNewLinkTypes);
}

namespace {
// Names from libbpf's own tables, so TypeScript and libbpf agree on spelling.
template <typename Fn>
Napi::Array Names(Napi::Env env, Fn name_of) {
  Napi::Array out = Napi::Array::New(env);
  for (int i = 0; i < 512; i++) {
    const char* name = name_of(i);
    if (name == nullptr) break;
    out.Set(static_cast<uint32_t>(i), name);
  }
  return out;
}

// libbpf probes answer 1 (yes), 0 (no) or a negative errno (could not tell)
Napi::Value Answer(Napi::Env env, int result, const std::string& op) {
  if (result < 0) return MakeBpfError(env, BpfFailure{op, result, ""}).Value();
  return Napi::Boolean::New(env, result == 1);
}

Napi::Value ProbeProgType(const Napi::CallbackInfo& info) {
  int type = info[0].As<Napi::Number>().Int32Value();
  LibbpfLogCapture capture;
  return Answer(info.Env(), libbpf_probe_bpf_prog_type(static_cast<bpf_prog_type>(type), nullptr), "libbpf_probe_bpf_prog_type");
}

Napi::Value ProbeMapType(const Napi::CallbackInfo& info) {
  int type = info[0].As<Napi::Number>().Int32Value();
  LibbpfLogCapture capture;
  return Answer(info.Env(), libbpf_probe_bpf_map_type(static_cast<bpf_map_type>(type), nullptr), "libbpf_probe_bpf_map_type");
}

Napi::Value ProbeHelper(const Napi::CallbackInfo& info) {
  int prog = info[0].As<Napi::Number>().Int32Value();
  int helper = info[1].As<Napi::Number>().Int32Value();
  LibbpfLogCapture capture;
  return Answer(info.Env(),
                libbpf_probe_bpf_helper(static_cast<bpf_prog_type>(prog), static_cast<bpf_func_id>(helper), nullptr),
                "libbpf_probe_bpf_helper");
}

Napi::Value Versions(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("libbpf", libbpf_version_string());
  out.Set("possibleCpus", libbpf_num_possible_cpus());
  return out;
}
}  // namespace

Napi::Object InitProbes(Napi::Env env, Napi::Object exports) {
  exports.Set("probeProgType", Napi::Function::New(env, ProbeProgType));
  exports.Set("probeMapType", Napi::Function::New(env, ProbeMapType));
  exports.Set("probeHelper", Napi::Function::New(env, ProbeHelper));
  exports.Set("versions", Napi::Function::New(env, Versions));
  exports.Set("progTypeNames", Names(env, [](int i) { return libbpf_bpf_prog_type_str(static_cast<bpf_prog_type>(i)); }));
  exports.Set("mapTypeNames", Names(env, [](int i) { return libbpf_bpf_map_type_str(static_cast<bpf_map_type>(i)); }));
  exports.Set("attachTypeNames", Names(env, AttachTypeName));
  return exports;
}

}  // namespace periscope
