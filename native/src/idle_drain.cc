// SPDX-License-Identifier: Apache-2.0
#include "handles.h"

namespace periscope {

void IdleDrain::Start(uv_loop_t* loop, void* owner, void (*drain)(void* owner), uint64_t every_ms) {
  if (timer_ == nullptr) {
    timer_ = new uv_timer_t;
    uv_timer_init(loop, timer_);
    timer_->data = this;
    // the timer alone must not keep the process alive
    uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
  }
  owner_ = owner;
  drain_ = drain;
  uv_timer_start(timer_, [](uv_timer_t* timer) {
    auto* self = static_cast<IdleDrain*>(timer->data);
    self->drain_(self->owner_);
  }, every_ms, every_ms);
}

void IdleDrain::Stop() {
  if (timer_ != nullptr) uv_timer_stop(timer_);
}

void IdleDrain::Close() {
  if (timer_ == nullptr) return;
  uv_timer_stop(timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* handle) { delete reinterpret_cast<uv_timer_t*>(handle); });
  timer_ = nullptr;
}

void RaiseUncaught(Napi::Env env) {
  bool pending = false;
  napi_value error;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) return;
  if (napi_get_and_clear_last_exception(env, &error) == napi_ok) napi_fatal_exception(env, error);
}

}  // namespace periscope
