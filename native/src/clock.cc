// SPDX-License-Identifier: Apache-2.0
// clock_gettime for any clock id. Node exposes CLOCK_MONOTONIC (process.hrtime) and the wall clock
// at millisecond resolution only; kernel records carry CLOCK_BOOTTIME (bpf_ktime_get_boot_ns), and
// converting them to wall time exactly needs both clocks read side by side.
#include <cerrno>
#include <ctime>

#include "errors.h"
#include "handles.h"

namespace periscope {

// clockGettime(clockid): nanoseconds as a bigint
Napi::Value ClockGettime(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  timespec now{};
  if (clock_gettime(static_cast<clockid_t>(info[0].As<Napi::Number>().Int32Value()), &now) != 0) {
    ThrowBpfError(env, "clock_gettime", errno);
  }
  uint64_t ns = static_cast<uint64_t>(now.tv_sec) * 1000000000ULL + static_cast<uint64_t>(now.tv_nsec);
  return Napi::BigInt::New(env, ns);
}

}  // namespace periscope
