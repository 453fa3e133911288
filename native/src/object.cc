// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <system_error>
#include <thread>
#include <vector>

#include "errors.h"
#include "handles.h"

namespace periscope {

Napi::Function Object::Init(Napi::Env env) {
  return DefineClass(env, "BpfObject",
                     {
                         InstanceMethod<&Object::Load>("load"),
                         InstanceMethod<&Object::Programs>("programs"),
                         InstanceMethod<&Object::Maps>("maps"),
                         InstanceMethod<&Object::Name>("name"),
                         InstanceMethod<&Object::Btf>("btf"),
                         InstanceMethod<&Object::Close>("close"),
                     });
}

// new BpfObject(path): opens (parses) the ELF; nothing reaches the kernel until load().
Object::Object(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Object>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "BpfObject expects a path");
  std::string path = info[0].As<Napi::String>();
  LibbpfLogCapture capture;
  errno = 0;
  obj_ = bpf_object__open_file(path.c_str(), nullptr);
  int err = libbpf_get_error(obj_);
  if (err != 0 || obj_ == nullptr) {
    obj_ = nullptr;
    ThrowBpfError(env, "bpf_object__open_file " + path, err != 0 ? err : LastErrno(), capture.take());
  }
}

Object::~Object() { CloseAll(); }

bpf_object* Object::handle(Napi::Env env) {
  if (obj_ == nullptr) ThrowBpfError(env, "use of a closed BPF object", EBADF);
  if (loading_) ThrowBpfError(env, "use of a BPF object while it loads", EBUSY);
  return obj_;
}

void Object::adopt(Napi::Env, Link* link, Napi::Object js) {
  links_.insert(link);
  link_refs_.push_back(Napi::Persistent(js));
}

void Object::forget(Link* link) {
  links_.erase(link);
  for (auto it = link_refs_.begin(); it != link_refs_.end(); ++it) {
    if (Link::Unwrap(it->Value()) == link) {
      it->Reset();
      link_refs_.erase(it);
      break;
    }
  }
}

/*
 * Releases links side by side. Detaching a tracepoint link waits for RCU grace periods in the
 * kernel, 30 to 80 ms a link on a VM; one after another, the default plugins took 7.8 s to stop.
 * Perf's unregister waits under a mutex, so only part of the waits overlap: 4.1 s side by side.
 */
static void ReleaseSideBySide(const std::vector<Link*>& links) {
  constexpr size_t kMaxThreads = 32;
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < links.size();) links[i]->Release();
  };
  std::vector<std::thread> threads;
  try {
    while (threads.size() + 1 < std::min(links.size(), kMaxThreads)) threads.emplace_back(work);
  } catch (const std::system_error&) {
    // no thread to spare: the ones started, and this one, release the rest
  }
  work();
  for (auto& thread : threads) thread.join();
}

void Object::CloseAll() {
  ReleaseSideBySide(std::vector<Link*>(links_.begin(), links_.end()));
  links_.clear();
  for (auto& ref : link_refs_) ref.Reset();
  link_refs_.clear();
  if (obj_ != nullptr) bpf_object__close(obj_);
  obj_ = nullptr;
}

// Verifier-heavy loads run on the libuv thread pool; the object is unusable until it settles.
class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, Object* object, Napi::Object js)
      : Napi::AsyncWorker(env), object_(object), deferred_(Napi::Promise::Deferred::New(env)) {
    keep_.Reset(js, 1);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    LibbpfLogCapture capture;
    int err = bpf_object__load(object_->obj_);
    if (err != 0) failure_ = BpfFailure{std::string("bpf_object__load ") + bpf_object__name(object_->obj_), err, capture.take()};
  }
  void OnOK() override {
    object_->loading_ = false;
    if (failure_.err != 0) {
      deferred_.Reject(MakeBpfError(Env(), failure_).Value());
    } else {
      object_->loaded_ = true;
      deferred_.Resolve(Env().Undefined());
    }
  }

 private:
  Object* object_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keep_;
  BpfFailure failure_;
};

Napi::Value Object::Load(const Napi::CallbackInfo& info) {
  handle(info.Env());
  if (loaded_) ThrowBpfError(info.Env(), "bpf_object__load: already loaded", EALREADY);
  loading_ = true;
  auto* worker = new LoadWorker(info.Env(), this, info.This().As<Napi::Object>());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value Object::Programs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = handle(env);
  Napi::Array result = Napi::Array::New(env);
  uint32_t i = 0;
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj) {
    Napi::Object js = Program::constructor.New({});
    Program::Unwrap(js)->Bind(info.This().As<Napi::Object>(), this, prog);
    result.Set(i++, js);
  }
  return result;
}

Napi::Value Object::Maps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = handle(env);
  Napi::Array result = Napi::Array::New(env);
  uint32_t i = 0;
  bpf_map* map;
  bpf_object__for_each_map(map, obj) {
    Napi::Object js = Map::constructor.New({});
    Map::Unwrap(js)->Bind(info.This().As<Napi::Object>(), this, map);
    result.Set(i++, js);
  }
  return result;
}

Napi::Value Object::Name(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), bpf_object__name(handle(info.Env())));
}

// btf(): the object's types as libbpf laid them out at open: unlike the ELF's raw .BTF, data
// sections (.rodata, .data, .bss) carry their size and each variable's offset, from the symbol table.
Napi::Value Object::Btf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = handle(env);
  const btf* types = bpf_object__btf(obj);
  if (types == nullptr) ThrowBpfError(env, std::string("bpf_object__btf ") + bpf_object__name(obj) + ": the object has no .BTF section", ENOENT);
  return DescribeBtf(env, types);
}

Napi::Value Object::Close(const Napi::CallbackInfo& info) {
  if (loading_) ThrowBpfError(info.Env(), "close of a BPF object while it loads", EBUSY);
  CloseAll();
  return info.Env().Undefined();
}

}  // namespace periscope
