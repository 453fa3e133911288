// SPDX-License-Identifier: Apache-2.0
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "errors.h"
#include "handles.h"

namespace periscope {

namespace {
constexpr size_t kHeaderBytes = 8;
constexpr size_t Padded(size_t size) { return (size + 7) & ~size_t{7}; }
}  // namespace

RecordBatcher::RecordBatcher(size_t capacity) : capacity_(capacity) { Reset(); }

RecordBatcher::~RecordBatcher() { free(data_); }

void RecordBatcher::Reset() {
  data_ = static_cast<uint8_t*>(malloc(capacity_));
  allocated_ = capacity_;
  used_ = 0;
  count_ = 0;
}

void RecordBatcher::Append(const void* data, size_t size) {
  size_t need = used_ + kHeaderBytes + Padded(size);
  if (need > allocated_) {
    // perf buffers cannot stop mid-consume, so a full batch grows until the pass ends
    allocated_ = need;
    data_ = static_cast<uint8_t*>(realloc(data_, allocated_));
  }
  uint32_t header[2] = {static_cast<uint32_t>(size), 0};
  memcpy(data_ + used_, header, kHeaderBytes);
  memcpy(data_ + used_ + kHeaderBytes, data, size);
  used_ = need;
  count_++;
}

void RecordBatcher::Deliver(Napi::Env env, Napi::FunctionReference& callback, Napi::AsyncContext& context,
                            uint64_t lost) {
  Napi::HandleScope scope(env);
  size_t used = used_;
  uint32_t count = count_;
  // the buffer changes hands: JS frees it when the ArrayBuffer is collected
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, data_, allocated_, [](Napi::Env, void* data) { free(data); });
  Reset();
  callback.MakeCallback(Napi::Object::New(env),
                        {buffer, Napi::Number::New(env, static_cast<double>(used)), Napi::Number::New(env, count),
                         Napi::Number::New(env, static_cast<double>(lost))},
                        context);
}


Napi::Function PerfBuffer::Init(Napi::Env env) {
  return DefineClass(env, "BpfPerfBuffer",
                     {
                         InstanceMethod<&PerfBuffer::Start>("start"),
                         InstanceMethod<&PerfBuffer::Pause>("pause"),
                         InstanceMethod<&PerfBuffer::Drain>("drain"),
                         InstanceMethod<&PerfBuffer::Close>("close"),
                     });
}

// new BpfPerfBuffer(mapFd, pagesPerCpu, onBatch(buffer, byteLength, count, lost), batchBytes)
PerfBuffer::PerfBuffer(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<PerfBuffer>(info), batcher_(info[3].As<Napi::Number>().Uint32Value()) {
  Napi::Env env = info.Env();
  int map_fd = info[0].As<Napi::Number>().Int32Value();
  size_t pages = info[1].As<Napi::Number>().Uint32Value();
  callback_ = Napi::Persistent(info[2].As<Napi::Function>());
  context_ = new Napi::AsyncContext(env, "periscope:perfbuf");
  LibbpfLogCapture capture;
  errno = 0;
  pb_ = perf_buffer__new(map_fd, pages, OnSample, OnLost, this, nullptr);
  if (pb_ == nullptr || libbpf_get_error(pb_) != 0) {
    int err = pb_ != nullptr ? static_cast<int>(libbpf_get_error(pb_)) : LastErrno();
    pb_ = nullptr;
    ThrowBpfError(env, "perf_buffer__new", err, capture.take());
  }
}

PerfBuffer::~PerfBuffer() {
  Shutdown();
  delete context_;
}

void PerfBuffer::Shutdown() {
  idle_.Close();
  if (poll_ != nullptr) {
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
    poll_ = nullptr;
  }
  if (pb_ != nullptr) perf_buffer__free(pb_);
  pb_ = nullptr;
}

void PerfBuffer::OnSample(void* ctx, int, void* data, __u32 size) {
  static_cast<PerfBuffer*>(ctx)->batcher_.Append(data, size);
}

void PerfBuffer::OnLost(void* ctx, int, __u64 count) { static_cast<PerfBuffer*>(ctx)->lost_ += count; }

void PerfBuffer::Pump(Napi::Env env) {
  if (pb_ == nullptr) return;
  int err = perf_buffer__consume(pb_);
  if (err < 0) {
    callback_.MakeCallback(Napi::Object::New(env), {MakeBpfError(env, BpfFailure{"perf_buffer__consume", err, ""}).Value()},
                           *context_);
    return;
  }
  if (!batcher_.empty() || lost_ != 0) {
    uint64_t lost = lost_;
    lost_ = 0;
    batcher_.Deliver(env, callback_, *context_, lost);
  }
}

void PerfBuffer::OnReadable(uv_poll_t* poll, int status, int) {
  auto* self = static_cast<PerfBuffer*>(poll->data);
  if (status < 0) return;
  Napi::Env env = self->Env();
  Napi::HandleScope scope(env);
  self->Pump(env);
}

Napi::Value PerfBuffer::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (pb_ == nullptr) ThrowBpfError(env, "start of a closed perf buffer consumer", EBADF);
  if (poll_ == nullptr) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    uv_poll_init(loop, poll_, perf_buffer__epoll_fd(pb_));
    poll_->data = this;
    self_ = Napi::Persistent(info.This().As<Napi::Object>());
  }
  uv_poll_start(poll_, UV_READABLE, OnReadable);
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  idle_.Start(loop, this, [](void* owner) {
    auto* self = static_cast<PerfBuffer*>(owner);
    Napi::HandleScope scope(self->Env());
    self->Pump(self->Env());
  });
  return env.Undefined();
}

Napi::Value PerfBuffer::Pause(const Napi::CallbackInfo& info) {
  idle_.Stop();
  if (poll_ != nullptr) uv_poll_stop(poll_);
  return info.Env().Undefined();
}

Napi::Value PerfBuffer::Drain(const Napi::CallbackInfo& info) {
  Pump(info.Env());
  return info.Env().Undefined();
}

Napi::Value PerfBuffer::Close(const Napi::CallbackInfo& info) {
  Shutdown();
  self_.Reset();
  return info.Env().Undefined();
}

}  // namespace periscope
