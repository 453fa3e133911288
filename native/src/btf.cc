// SPDX-License-Identifier: Apache-2.0
#include <bpf/btf.h>
#include <cerrno>

#include "errors.h"
#include "handles.h"

namespace periscope {

namespace {
const char* KindName(int kind) {
  switch (kind) {
    case BTF_KIND_INT: return "int";
    case BTF_KIND_PTR: return "ptr";
    case BTF_KIND_ARRAY: return "array";
    case BTF_KIND_STRUCT: return "struct";
    case BTF_KIND_UNION: return "union";
    case BTF_KIND_ENUM: return "enum";
    case BTF_KIND_FWD: return "fwd";
    case BTF_KIND_TYPEDEF: return "typedef";
    case BTF_KIND_VOLATILE: return "volatile";
    case BTF_KIND_CONST: return "const";
    case BTF_KIND_RESTRICT: return "restrict";
    case BTF_KIND_FUNC: return "func";
    case BTF_KIND_FUNC_PROTO: return "func_proto";
    case BTF_KIND_VAR: return "var";
    case BTF_KIND_DATASEC: return "datasec";
    case BTF_KIND_FLOAT: return "float";
    case BTF_KIND_DECL_TAG: return "decl_tag";
    case BTF_KIND_TYPE_TAG: return "type_tag";
    case BTF_KIND_ENUM64: return "enum64";
    default: return "unknown";
  }
}

Napi::Object Describe(Napi::Env env, const btf* types, __u32 id) {
  const btf_type* t = btf__type_by_id(types, id);
  int kind = btf_kind(t);
  Napi::Object out = Napi::Object::New(env);
  out.Set("id", id);
  out.Set("kind", KindName(kind));
  out.Set("name", btf__name_by_offset(types, t->name_off));
  switch (kind) {
    case BTF_KIND_INT:
      out.Set("size", t->size);
      out.Set("bits", btf_int_bits(t));
      out.Set("signed", (btf_int_encoding(t) & BTF_INT_SIGNED) != 0);
      out.Set("char", (btf_int_encoding(t) & BTF_INT_CHAR) != 0);
      out.Set("bool", (btf_int_encoding(t) & BTF_INT_BOOL) != 0);
      break;
    case BTF_KIND_FLOAT:
    case BTF_KIND_ENUM:
    case BTF_KIND_ENUM64:
      out.Set("size", t->size);
      break;
    case BTF_KIND_ARRAY: {
      const struct btf_array* array = btf_array(t);
      out.Set("type", array->type);
      out.Set("length", array->nelems);
      break;
    }
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION: {
      out.Set("size", t->size);
      Napi::Array members = Napi::Array::New(env, btf_vlen(t));
      const btf_member* m = btf_members(t);
      for (__u16 i = 0; i < btf_vlen(t); i++) {
        Napi::Object member = Napi::Object::New(env);
        member.Set("name", btf__name_by_offset(types, m[i].name_off));
        member.Set("type", m[i].type);
        member.Set("bitOffset", btf_member_bit_offset(t, i));
        member.Set("bitSize", btf_member_bitfield_size(t, i));
        members.Set(i, member);
      }
      out.Set("members", members);
      break;
    }
    case BTF_KIND_DATASEC: {
      out.Set("size", t->size);
      Napi::Array vars = Napi::Array::New(env, btf_vlen(t));
      const btf_var_secinfo* v = btf_var_secinfos(t);
      for (__u16 i = 0; i < btf_vlen(t); i++) {
        Napi::Object var = Napi::Object::New(env);
        var.Set("type", v[i].type);
        var.Set("offset", v[i].offset);
        var.Set("size", v[i].size);
        vars.Set(i, var);
      }
      out.Set("vars", vars);
      break;
    }
    case BTF_KIND_PTR:
    case BTF_KIND_TYPEDEF:
    case BTF_KIND_VOLATILE:
    case BTF_KIND_CONST:
    case BTF_KIND_RESTRICT:
    case BTF_KIND_VAR:
    case BTF_KIND_FUNC:
    case BTF_KIND_TYPE_TAG:
    case BTF_KIND_DECL_TAG:
      out.Set("type", t->type);
      break;
    default:
      break;
  }
  return out;
}
}  // namespace

// Every type of `types`, index = type id; id 0 is void.
Napi::Array DescribeBtf(Napi::Env env, const btf* types) {
  __u32 count = btf__type_cnt(types);
  Napi::Array out = Napi::Array::New(env, count);
  Napi::Object void_type = Napi::Object::New(env);
  void_type.Set("id", 0);
  void_type.Set("kind", "void");
  void_type.Set("name", "");
  out.Set(0u, void_type);
  for (__u32 id = 1; id < count; id++) out.Set(id, Describe(env, types, id));
  return out;
}

// btfTypes(path) -> every type in an ELF's .BTF (or a raw BTF file).
// This is the BTF as clang wrote it: its data sections (DATASEC) have size 0 and every variable
// at offset 0 until libbpf lays them out at open, so settings are read from BpfObject.btf().
Napi::Value BtfTypes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "btfTypes expects a path");
  std::string path = info[0].As<Napi::String>();
  LibbpfLogCapture capture;
  errno = 0;
  btf* types = btf__parse(path.c_str(), nullptr);
  if (types == nullptr || libbpf_get_error(types) != 0) {
    int err = types != nullptr ? static_cast<int>(libbpf_get_error(types)) : LastErrno();
    ThrowBpfError(env, "btf__parse " + path, err, capture.take());
  }
  Napi::Array out = DescribeBtf(env, types);
  btf__free(types);
  return out;
}

}  // namespace periscope
