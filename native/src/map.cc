// SPDX-License-Identifier: Apache-2.0
#include <bpf/bpf.h>
#include <cerrno>
#include <cstring>

#include "errors.h"
#include "handles.h"

namespace periscope {

Napi::FunctionReference Map::constructor;

Napi::Function Map::Init(Napi::Env env) {
  Napi::Function fn = DefineClass(env, "BpfMap",
                                  {
                                      InstanceMethod<&Map::Describe>("describe"),
                                      InstanceMethod<&Map::SetMaxEntries>("setMaxEntries"),
                                      InstanceMethod<&Map::InitialValue>("initialValue"),
                                      InstanceMethod<&Map::SetInitialValue>("setInitialValue"),
                                      InstanceMethod<&Map::Lookup>("lookup"),
                                      InstanceMethod<&Map::Update>("update"),
                                      InstanceMethod<&Map::Delete>("delete"),
                                      InstanceMethod<&Map::NextKey>("nextKey"),
                                      InstanceMethod<&Map::LookupBatch>("lookupBatch"),
                                  });
  constructor = Napi::Persistent(fn);
  return fn;
}

Map::Map(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Map>(info) {}

void Map::Bind(Napi::Object owner, Object* object, bpf_map* map) {
  owner_ = Napi::Persistent(owner);
  object_ = object;
  map_ = map;
}

bpf_map* Map::handle(Napi::Env env) {
  object_->handle(env);
  return map_;
}

int Map::fd(Napi::Env env) {
  bpf_map* map = handle(env);
  if (!object_->loaded()) ThrowBpfError(env, std::string("map ") + bpf_map__name(map) + " used before load", EBADF);
  return bpf_map__fd(map);
}

static bool IsPerCpu(enum bpf_map_type type) {
  return type == BPF_MAP_TYPE_PERCPU_ARRAY || type == BPF_MAP_TYPE_PERCPU_HASH ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

// Per-CPU values come back as one slot per possible CPU, each rounded up to 8 bytes.
size_t Map::ValueBytes(Napi::Env env) {
  bpf_map* map = handle(env);
  size_t size = bpf_map__value_size(map);
  if (!IsPerCpu(bpf_map__type(map))) return size;
  return ((size + 7) & ~size_t{7}) * static_cast<size_t>(libbpf_num_possible_cpus());
}

Napi::Value Map::Describe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = handle(env);
  Napi::Object out = Napi::Object::New(env);
  const char* type = libbpf_bpf_map_type_str(bpf_map__type(map));
  out.Set("name", bpf_map__name(map));
  out.Set("type", type == nullptr ? env.Null() : Napi::String::New(env, type));
  out.Set("keySize", bpf_map__key_size(map));
  out.Set("valueSize", bpf_map__value_size(map));
  out.Set("maxEntries", bpf_map__max_entries(map));
  out.Set("flags", bpf_map__map_flags(map));
  out.Set("perCpu", IsPerCpu(bpf_map__type(map)));
  out.Set("fd", object_->loaded() ? bpf_map__fd(map) : -1);
  if (object_->loaded()) {
    bpf_map_info map_info{};
    __u32 len = sizeof map_info;
    if (bpf_obj_get_info_by_fd(bpf_map__fd(map), &map_info, &len) == 0) out.Set("id", map_info.id);
  }
  return out;
}

Napi::Value Map::SetMaxEntries(const Napi::CallbackInfo& info) {
  int err = bpf_map__set_max_entries(handle(info.Env()), info[0].As<Napi::Number>().Uint32Value());
  if (err != 0) ThrowBpfError(info.Env(), std::string("bpf_map__set_max_entries ") + bpf_map__name(map_), err);
  return info.Env().Undefined();
}

// initialValue(): a copy of a global-data map's (.rodata, .bss, .data) contents before load.
Napi::Value Map::InitialValue(const Napi::CallbackInfo& info) {
  size_t size = 0;
  const void* data = bpf_map__initial_value(handle(info.Env()), &size);
  if (data == nullptr) return info.Env().Undefined();
  return Napi::Buffer<uint8_t>::Copy(info.Env(), static_cast<const uint8_t*>(data), size);
}

Napi::Value Map::SetInitialValue(const Napi::CallbackInfo& info) {
  Bytes bytes = ArgBytes(info, 0, "value");
  int err = bpf_map__set_initial_value(handle(info.Env()), bytes.data, bytes.size);
  if (err != 0) ThrowBpfError(info.Env(), std::string("bpf_map__set_initial_value ") + bpf_map__name(map_), err);
  return info.Env().Undefined();
}

// lookup(key) -> Buffer | undefined
Napi::Value Map::Lookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int map_fd = fd(env);
  Bytes key = ArgBytes(info, 0, "key");
  Napi::Buffer<uint8_t> value = Napi::Buffer<uint8_t>::New(env, ValueBytes(env));
  if (bpf_map_lookup_elem(map_fd, key.data, value.Data()) != 0) {
    if (errno == ENOENT) return env.Undefined();
    ThrowBpfError(env, std::string("bpf_map_lookup_elem ") + bpf_map__name(map_), errno);
  }
  return value;
}

// update(key, value, flags)
Napi::Value Map::Update(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int map_fd = fd(env);
  Bytes key = ArgBytes(info, 0, "key"), value = ArgBytes(info, 1, "value");
  __u64 flags = info.Length() > 2 && info[2].IsNumber() ? static_cast<__u64>(info[2].As<Napi::Number>().Int64Value()) : static_cast<__u64>(BPF_ANY);
  if (bpf_map_update_elem(map_fd, key.data, value.data, flags) != 0)
    ThrowBpfError(env, std::string("bpf_map_update_elem ") + bpf_map__name(map_), errno);
  return env.Undefined();
}

// delete(key) -> whether the key existed
Napi::Value Map::Delete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int map_fd = fd(env);
  Bytes key = ArgBytes(info, 0, "key");
  if (bpf_map_delete_elem(map_fd, key.data) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowBpfError(env, std::string("bpf_map_delete_elem ") + bpf_map__name(map_), errno);
  }
  return Napi::Boolean::New(env, true);
}

// nextKey(key | null) -> Buffer | undefined at the end
Napi::Value Map::NextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int map_fd = fd(env);
  const void* key = nullptr;
  if (!info[0].IsNull() && !info[0].IsUndefined()) key = ArgBytes(info, 0, "key").data;
  Napi::Buffer<uint8_t> next = Napi::Buffer<uint8_t>::New(env, bpf_map__key_size(map_));
  if (bpf_map_get_next_key(map_fd, key, next.Data()) != 0) {
    if (errno == ENOENT) return env.Undefined();
    ThrowBpfError(env, std::string("bpf_map_get_next_key ") + bpf_map__name(map_), errno);
  }
  return next;
}

// lookupBatch(token | null, maxCount) -> { keys, values, count, token | null when done }.
// Throws EINVAL/ENOTSUPP on kernels or map types without batch ops; TypeScript falls back.
Napi::Value Map::LookupBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int map_fd = fd(env);
  size_t key_size = bpf_map__key_size(map_);
  size_t token_size = key_size < 8 ? 8 : key_size;
  std::vector<uint8_t> in_token(token_size);
  bool has_in = !info[0].IsNull() && !info[0].IsUndefined();
  if (has_in) {
    Bytes token = ArgBytes(info, 0, "token");
    memcpy(in_token.data(), token.data, token.size < token_size ? token.size : token_size);
  }
  __u32 count = info[1].As<Napi::Number>().Uint32Value();
  size_t value_bytes = ValueBytes(env);
  Napi::Buffer<uint8_t> keys = Napi::Buffer<uint8_t>::New(env, key_size * count);
  Napi::Buffer<uint8_t> values = Napi::Buffer<uint8_t>::New(env, value_bytes * count);
  Napi::Buffer<uint8_t> out_token = Napi::Buffer<uint8_t>::New(env, token_size);
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  int err = bpf_map_lookup_batch(map_fd, has_in ? in_token.data() : nullptr, out_token.Data(), keys.Data(),
                                 values.Data(), &count, &opts);
  bool done = false;
  if (err != 0) {
    if (errno != ENOENT) ThrowBpfError(env, std::string("bpf_map_lookup_batch ") + bpf_map__name(map_), errno);
    done = true;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("keys", keys);
  out.Set("values", values);
  out.Set("count", count);
  out.Set("token", done ? env.Null() : Napi::Value(out_token));
  return out;
}

Bytes ArgBytes(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsTypedArray())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a Uint8Array");
  auto array = info[index].As<Napi::TypedArray>();
  auto* base = static_cast<const uint8_t*>(array.ArrayBuffer().Data());
  return Bytes{base + array.ByteOffset(), array.ByteLength()};
}

}  // namespace periscope
