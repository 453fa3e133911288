// SPDX-License-Identifier: Apache-2.0
// Gives the C heap's free pages back to the kernel. glibc returns only the top of its main heap by
// itself; what start-up frees below a live allocation (libbpf's parse of the kernel's BTF, the
// feature probes, esbuild's answers) stays resident otherwise: about 10 MB of a runtime with no
// plugin. malloc_trim(0) releases every whole free page of every arena (madvise MADV_DONTNEED).
#include <malloc.h>

#include "handles.h"

namespace periscope {

// trimHeap(): whether any memory went back to the kernel (false where the C library is not glibc)
Napi::Value TrimHeap(const Napi::CallbackInfo& info) {
#ifdef __GLIBC__
  return Napi::Boolean::New(info.Env(), malloc_trim(0) == 1);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

}  // namespace periscope
