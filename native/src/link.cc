// SPDX-License-Identifier: Apache-2.0
#include <bpf/bpf.h>
#include <unistd.h>
#include <cerrno>

#include "errors.h"
#include "handles.h"

namespace periscope {

Napi::FunctionReference Link::constructor;

Napi::Function Link::Init(Napi::Env env) {
  Napi::Function fn = DefineClass(env, "BpfLink",
                                  {
                                      InstanceMethod<&Link::Detach>("detach"),
                                      InstanceMethod<&Link::Info>("info"),
                                      InstanceMethod<&Link::IterCreate>("iterCreate"),
                                  });
  constructor = Napi::Persistent(fn);
  return fn;
}

Link::Link(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Link>(info) {}

Link::~Link() { Release(); }

void Link::BindLink(Object* owner, bpf_link* link, std::string kind) {
  owner_ = owner;
  link_ = link;
  kind_ = std::move(kind);
}

void Link::BindFd(Object* owner, int fd, std::string kind) {
  owner_ = owner;
  fd_ = fd;
  kind_ = std::move(kind);
}

void Link::BindTc(Object* owner, const bpf_tc_hook& hook, const bpf_tc_opts& opts) {
  owner_ = owner;
  tc_ = true;
  tc_hook_ = hook;
  tc_opts_ = opts;
  kind_ = "tc";
}

void Link::Release() {
  if (link_ != nullptr) bpf_link__destroy(link_);
  link_ = nullptr;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  if (tc_) {
    // bpf_tc_detach identifies the filter by handle and priority only
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = tc_opts_.handle, .priority = tc_opts_.priority);
    bpf_tc_detach(&tc_hook_, &opts);
    tc_ = false;
  }
  owner_ = nullptr;
}

// detach() -> true when this call detached it, false when it already was
Napi::Value Link::Detach(const Napi::CallbackInfo& info) {
  bool was_attached = attached();
  Object* owner = owner_;
  Release();
  if (owner != nullptr) owner->forget(this);
  return Napi::Boolean::New(info.Env(), was_attached);
}

// iterCreate() -> the fd of a new instance of an iterator link (bpf_iter_create, close-on-exec);
// reading it to EOF runs the program once over what it iterates. The caller closes the fd.
Napi::Value Link::IterCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (link_ == nullptr && fd_ < 0) ThrowBpfError(env, "bpf_iter_create (the link was detached)", EBADF);
  int fd = bpf_iter_create(this->fd());
  if (fd < 0) ThrowBpfError(env, "bpf_iter_create", errno);
  return Napi::Number::New(env, fd);
}

// info() -> { kind, id, progId, type } from the kernel; tc filters have no link id (0)
Napi::Value Link::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("kind", kind_);
  out.Set("attached", attached());
  if (tc_) {
    out.Set("id", 0);
    out.Set("progId", tc_opts_.prog_id);
    out.Set("type", "tc");
    out.Set("ifindex", tc_hook_.ifindex);
    out.Set("handle", tc_opts_.handle);
    out.Set("priority", tc_opts_.priority);
    return out;
  }
  if (!attached()) return out;
  bpf_link_info link_info{};
  __u32 len = sizeof link_info;
  if (bpf_obj_get_info_by_fd(fd(), &link_info, &len) != 0)
    ThrowBpfError(env, "bpf_obj_get_info_by_fd link", errno);
  const char* type = LinkTypeName(static_cast<int>(link_info.type));
  out.Set("id", link_info.id);
  out.Set("progId", link_info.prog_id);
  out.Set("type", type == nullptr ? env.Null() : Napi::String::New(env, type));
  out.Set("fd", fd());
  return out;
}

}  // namespace periscope
