// SPDX-License-Identifier: Apache-2.0
// One error class for the whole addon. TypeScript creates the class and hands it over once at
// start-up (setErrorClass), so errors carry errno, code and the libbpf operation that failed and
// TypeScript can turn them into messages that say what to do.
#pragma once
#include <napi.h>
#include <string>

namespace periscope {

// Collects what libbpf prints (verifier logs among it) while one operation runs on this thread,
// so a failure can carry the log tail instead of printing it to stderr.
class LibbpfLogCapture {
 public:
  LibbpfLogCapture();
  ~LibbpfLogCapture();
  std::string take();
  static void append(const char* text);

 private:
  std::string buffer_;
  LibbpfLogCapture* previous_;
};

struct BpfFailure {
  std::string op;
  int err = 0;  // positive errno
  std::string log;
};

void SetErrorClass(const Napi::CallbackInfo& info);
// Throws the shared error class; `err` may be negative (libbpf style) or positive.
[[noreturn]] void ThrowBpfError(Napi::Env env, const std::string& op, int err, const std::string& log = "");
Napi::Error MakeBpfError(Napi::Env env, const BpfFailure& failure);
// libbpf returns NULL and sets errno for pointer results; this reads it safely.
int LastErrno();

}  // namespace periscope
