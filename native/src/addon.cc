// SPDX-License-Identifier: Apache-2.0
// Entry point of the libbpf addon. It stays thin: TypeScript (runtime/bpf/) checks options and
// writes the friendly errors; this layer checks argument types and mirrors libbpf's nouns.
#include <napi.h>

#include "errors.h"
#include "handles.h"

namespace periscope {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
  exports.Set("Object", Object::Init(env));
  exports.Set("Program", Program::Init(env));
  exports.Set("Map", Map::Init(env));
  exports.Set("Link", Link::Init(env));
  exports.Set("RingBuffer", RingBuffer::Init(env));
  exports.Set("PerfBuffer", PerfBuffer::Init(env));
  exports.Set("btfTypes", Napi::Function::New(env, BtfTypes));
  exports.Set("setProcessCredentials", Napi::Function::New(env, SetProcessCredentials));
  exports.Set("setAmbientCapabilities", Napi::Function::New(env, SetAmbientCapabilities));
  exports.Set("withFreshNetworkNamespace", Napi::Function::New(env, WithFreshNetworkNamespace));
  exports.Set("clockGettime", Napi::Function::New(env, ClockGettime));
  exports.Set("trimHeap", Napi::Function::New(env, TrimHeap));
  exports.Set("enableStats", Napi::Function::New(env, EnableStats));
  return InitProbes(env, exports);
}

}  // namespace periscope

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return periscope::Init(env, exports); }

NODE_API_MODULE(periscope_bpf, InitAddon)
