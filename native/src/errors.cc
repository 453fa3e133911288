// SPDX-License-Identifier: Apache-2.0
#include "errors.h"

#include <bpf/libbpf.h>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace periscope {

namespace {
thread_local LibbpfLogCapture* current_capture = nullptr;
Napi::FunctionReference* error_class = nullptr;
// Keeps only the tail: verifier logs can be megabytes and the end is where the reason is.
constexpr size_t kMaxLogBytes = 64 * 1024;

int PrintToCapture(enum libbpf_print_level level, const char* format, va_list args) {
  char line[4096];
  vsnprintf(line, sizeof line, format, args);
  // libbpf's own chatter is only shown on request; failures carry their log instead
  if (getenv("PERISCOPE_LIBBPF_DEBUG") != nullptr) fputs(line, stderr);
  if (current_capture != nullptr && level != LIBBPF_DEBUG) LibbpfLogCapture::append(line);
  return 0;
}

struct InstallPrint {
  InstallPrint() { libbpf_set_print(PrintToCapture); }
} install_print;
}  // namespace

LibbpfLogCapture::LibbpfLogCapture() : previous_(current_capture) { current_capture = this; }
LibbpfLogCapture::~LibbpfLogCapture() { current_capture = previous_; }

std::string LibbpfLogCapture::take() { return std::move(buffer_); }

void LibbpfLogCapture::append(const char* text) {
  auto& buffer = current_capture->buffer_;
  buffer.append(text);
  if (buffer.size() > 2 * kMaxLogBytes) buffer.erase(0, buffer.size() - kMaxLogBytes);
}

void SetErrorClass(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "setErrorClass expects a class");
  delete error_class;
  error_class = new Napi::FunctionReference(Napi::Persistent(info[0].As<Napi::Function>()));
}

static const char* ErrnoCode(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case E2BIG: return "E2BIG";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ENOSPC: return "ENOSPC";
    case ERANGE: return "ERANGE";
    case ENOSYS: return "ENOSYS";
    case ENODATA: return "ENODATA";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOEXEC: return "ENOEXEC";
    case 524: return "ENOTSUPP";  // kernel-internal "not supported", leaks out of the bpf syscall
    case LIBBPF_ERRNO__FORMAT: return "LIBBPF_FORMAT";
    case LIBBPF_ERRNO__KVERSION: return "LIBBPF_KVERSION";
    case LIBBPF_ERRNO__ENDIAN: return "LIBBPF_ENDIAN";
    case LIBBPF_ERRNO__INTERNAL: return "LIBBPF_INTERNAL";
    case LIBBPF_ERRNO__RELOC: return "LIBBPF_RELOC";
    case LIBBPF_ERRNO__LOAD: return "LIBBPF_LOAD";
    case LIBBPF_ERRNO__VERIFY: return "LIBBPF_VERIFY";
    case LIBBPF_ERRNO__PROG2BIG: return "LIBBPF_PROG2BIG";
    case LIBBPF_ERRNO__KVER: return "LIBBPF_KVER";
    case LIBBPF_ERRNO__PROGTYPE: return "LIBBPF_PROGTYPE";
    case LIBBPF_ERRNO__WRNGPID: return "LIBBPF_WRNGPID";
    case LIBBPF_ERRNO__INVSEQ: return "LIBBPF_INVSEQ";
    case LIBBPF_ERRNO__NLPARSE: return "LIBBPF_NLPARSE";
    default: return "EUNKNOWN";
  }
}

Napi::Error MakeBpfError(Napi::Env env, const BpfFailure& failure) {
  int err = failure.err < 0 ? -failure.err : failure.err;
  char reason[256];
  libbpf_strerror(err, reason, sizeof reason);
  std::string message = failure.op + ": " + reason;
  if (error_class == nullptr) return Napi::Error::New(env, message);
  Napi::Object details = Napi::Object::New(env);
  details.Set("op", failure.op);
  details.Set("errno", err);
  details.Set("code", ErrnoCode(err));
  details.Set("log", failure.log);
  Napi::Value error = error_class->New({Napi::String::New(env, message), details});
  return Napi::Error(env, error);
}

void ThrowBpfError(Napi::Env env, const std::string& op, int err, const std::string& log) {
  throw MakeBpfError(env, BpfFailure{op, err, log});
}

int LastErrno() { return errno != 0 ? errno : EINVAL; }

}  // namespace periscope
