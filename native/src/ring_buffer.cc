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
// A sample callback returns this to stop libbpf's loop once the batch is full; the record that
// triggered it has already been copied, so nothing is lost.
constexpr int kBatchFull = -ENOSPC;
}  // namespace

RecordBatcher::RecordBatcher(size_t capacity) : capacity_(capacity) { Reset(); }

RecordBatcher::~RecordBatcher() { free(data_); }

void RecordBatcher::Reset() {
  data_ = static_cast<uint8_t*>(malloc(capacity_));
  allocated_ = capacity_;
  used_ = 0;
  count_ = 0;
}

bool RecordBatcher::Append(const void* data, size_t size) {
  size_t need = used_ + kHeaderBytes + Padded(size);
  if (need > allocated_) {
    // only an oversized record gets here: grow rather than refuse it
    allocated_ = need;
    data_ = static_cast<uint8_t*>(realloc(data_, allocated_));
  }
  uint32_t header[2] = {static_cast<uint32_t>(size), 0};
  memcpy(data_ + used_, header, kHeaderBytes);
  memcpy(data_ + used_ + kHeaderBytes, data, size);
  used_ = need;
  count_++;
  return used_ + kHeaderBytes < capacity_;
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

constexpr uint64_t kIdleDrainMs = 100;

void IdleDrain::Start(uv_loop_t* loop, void* owner, void (*drain)(void* owner)) {
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
  }, kIdleDrainMs, kIdleDrainMs);
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

Napi::Function RingBuffer::Init(Napi::Env env) {
  return DefineClass(env, "BpfRingBuffer",
                     {
                         InstanceMethod<&RingBuffer::Add>("add"),
                         InstanceMethod<&RingBuffer::Start>("start"),
                         InstanceMethod<&RingBuffer::Pause>("pause"),
                         InstanceMethod<&RingBuffer::Drain>("drain"),
                         InstanceMethod<&RingBuffer::Close>("close"),
                     });
}

// new BpfRingBuffer(mapFd, onBatch(buffer, byteLength, count, lost), batchBytes)
RingBuffer::RingBuffer(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<RingBuffer>(info), batcher_(info[2].As<Napi::Number>().Uint32Value()) {
  Napi::Env env = info.Env();
  int map_fd = info[0].As<Napi::Number>().Int32Value();
  callback_ = Napi::Persistent(info[1].As<Napi::Function>());
  context_ = new Napi::AsyncContext(env, "periscope:ringbuf");
  LibbpfLogCapture capture;
  errno = 0;
  rb_ = ring_buffer__new(map_fd, OnSample, this, nullptr);
  if (rb_ == nullptr || libbpf_get_error(rb_) != 0) {
    int err = rb_ != nullptr ? static_cast<int>(libbpf_get_error(rb_)) : LastErrno();
    rb_ = nullptr;
    ThrowBpfError(env, "ring_buffer__new", err, capture.take());
  }
}

RingBuffer::~RingBuffer() {
  Shutdown();
  delete context_;
}

void RingBuffer::Shutdown() {
  idle_.Close();
  if (poll_ != nullptr) {
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
    poll_ = nullptr;
  }
  if (rb_ != nullptr) ring_buffer__free(rb_);
  rb_ = nullptr;
}

int RingBuffer::OnSample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<RingBuffer*>(ctx);
  if (self->batcher_.Append(data, size)) return 0;
  self->full_ = true;
  return kBatchFull;
}

// add(mapFd): one consumer can serve several rings (one epoll fd for all of them)
Napi::Value RingBuffer::Add(const Napi::CallbackInfo& info) {
  if (rb_ == nullptr) ThrowBpfError(info.Env(), "ring_buffer__add on a closed consumer", EBADF);
  int err = ring_buffer__add(rb_, info[0].As<Napi::Number>().Int32Value(), OnSample, this);
  if (err != 0) ThrowBpfError(info.Env(), "ring_buffer__add", err);
  return info.Env().Undefined();
}

void RingBuffer::Pump(Napi::Env env, int max_batches) {
  for (int delivered = 0; rb_ != nullptr && delivered < max_batches;) {
    full_ = false;
    int n = ring_buffer__consume(rb_);
    if (n < 0 && !full_) {
      callback_.MakeCallback(Napi::Object::New(env), {MakeBpfError(env, BpfFailure{"ring_buffer__consume", n, ""}).Value()},
                             *context_);
      return;
    }
    if (!batcher_.empty()) {
      batcher_.Deliver(env, callback_, *context_, 0);
      delivered++;
    }
    if (!full_) return;
  }
}

void RingBuffer::OnReadable(uv_poll_t* poll, int status, int) {
  auto* self = static_cast<RingBuffer*>(poll->data);
  if (status < 0) return;
  Napi::Env env = self->Env();
  Napi::HandleScope scope(env);
  // bounded per wake-up so a flood cannot starve the event loop; epoll stays readable
  self->Pump(env, 16);
}

// start(): begins delivering from the libuv loop
Napi::Value RingBuffer::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (rb_ == nullptr) ThrowBpfError(env, "start of a closed ring buffer consumer", EBADF);
  if (poll_ == nullptr) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    uv_poll_init(loop, poll_, ring_buffer__epoll_fd(rb_));
    poll_->data = this;
    self_ = Napi::Persistent(info.This().As<Napi::Object>());
  }
  uv_poll_start(poll_, UV_READABLE, OnReadable);
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  idle_.Start(loop, this, [](void* owner) {
    auto* self = static_cast<RingBuffer*>(owner);
    Napi::HandleScope scope(self->Env());
    self->Pump(self->Env(), 16);
  });
  return env.Undefined();
}

// pause(): stops reading; records stay in the ring (and count as drops only if it fills up)
Napi::Value RingBuffer::Pause(const Napi::CallbackInfo& info) {
  idle_.Stop();
  if (poll_ != nullptr) uv_poll_stop(poll_);
  return info.Env().Undefined();
}

// drain(): synchronously delivers everything the rings hold now
Napi::Value RingBuffer::Drain(const Napi::CallbackInfo& info) {
  Pump(info.Env(), INT32_MAX);
  return info.Env().Undefined();
}

Napi::Value RingBuffer::Close(const Napi::CallbackInfo& info) {
  Shutdown();
  self_.Reset();
  return info.Env().Undefined();
}

}  // namespace periscope
