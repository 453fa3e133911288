// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <unistd.h>

#include "errors.h"
#include "handles.h"

namespace periscope {

RecordBatcher::RecordBatcher(size_t capacity) : capacity_(capacity) {}

RecordBatcher::~RecordBatcher() { free(data_); }

bool RecordBatcher::Append(const void* data, size_t size) {
  size_t need = used_ + RecordStride(size);
  if (need > allocated_) {
    // perf buffers cannot stop mid-consume, so a full batch grows until the pass ends
    size_t grown = std::max({need, capacity_, 2 * allocated_});
    auto* larger = static_cast<uint8_t*>(realloc(data_, grown));
    if (larger == nullptr) {
      // the batch so far stays intact; this sample is dropped, and counted
      unbatched_++;
      return false;
    }
    data_ = larger;
    allocated_ = grown;
  }
  uint32_t header[2] = {static_cast<uint32_t>(size), 0};
  memcpy(data_ + used_, header, kRecordHeaderBytes);
  memcpy(data_ + used_ + kRecordHeaderBytes, data, size);
  // the padding too, so JS never sees stale heap bytes
  memset(data_ + used_ + kRecordHeaderBytes + size, 0, need - used_ - kRecordHeaderBytes - size);
  used_ = need;
  count_++;
  return true;
}

uint64_t RecordBatcher::TakeUnbatched() {
  uint64_t unbatched = unbatched_;
  unbatched_ = 0;
  return unbatched;
}

bool RecordBatcher::Deliver(Napi::Env env, Napi::FunctionReference& callback, Napi::AsyncContext& context,
                            uint64_t lost) {
  Napi::HandleScope scope(env);
  // the buffer changes hands before the call, so a callback that throws cannot see it again:
  // JS frees it when the ArrayBuffer is collected
  Napi::ArrayBuffer buffer = data_ == nullptr ? Napi::ArrayBuffer::New(env, 0)
                                              : Napi::ArrayBuffer::New(env, data_, allocated_, [](Napi::Env, void* data) { free(data); });
  napi_value args[] = {buffer, Napi::Number::New(env, static_cast<double>(used_)), Napi::Number::New(env, count_),
                       Napi::Number::New(env, static_cast<double>(lost))};
  data_ = nullptr;
  allocated_ = 0;
  used_ = 0;
  count_ = 0;
  napi_value result;
  return napi_make_callback(env, context, env.Global(), callback.Value(), 4, args, &result) == napi_ok;
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
  // perf_buffer__free deletes its per-CPU entries through the fd it was given: if that were the
  // object's, closed first, they would go to whatever map reuses the number, so it gets our own
  int own_fd = fcntl(map_fd, F_DUPFD_CLOEXEC, 0);
  if (own_fd < 0) ThrowBpfError(env, "duplicate the perf event array map fd", errno);
  LibbpfLogCapture capture;
  errno = 0;
  pb_ = perf_buffer__new(own_fd, pages, OnSample, OnLost, this, nullptr);
  if (pb_ == nullptr || libbpf_get_error(pb_) != 0) {
    int err = pb_ != nullptr ? static_cast<int>(libbpf_get_error(pb_)) : LastErrno();
    pb_ = nullptr;
    close(own_fd);
    ThrowBpfError(env, "perf_buffer__new", err, capture.take());
  }
  map_fd_ = own_fd;
  context_ = new Napi::AsyncContext(env, "periscope:perfbuf");
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
  if (map_fd_ >= 0) close(map_fd_);
  map_fd_ = -1;
}

void PerfBuffer::OnSample(void* ctx, int, void* data, __u32 size) {
  static_cast<PerfBuffer*>(ctx)->batcher_.Append(data, size);
}

void PerfBuffer::OnLost(void* ctx, int, __u64 count) { static_cast<PerfBuffer*>(ctx)->lost_ += count; }

bool PerfBuffer::Fail(Napi::Env env, const BpfFailure& failure) {
  Napi::HandleScope scope(env);
  napi_value args[] = {MakeBpfError(env, failure).Value()};
  napi_value result;
  return napi_make_callback(env, *context_, env.Global(), callback_.Value(), 1, args, &result) == napi_ok;
}

void PerfBuffer::Pump(Napi::Env env) {
  // a listener that drains from inside its callback would be called again before it returns
  if (pb_ == nullptr || pumping_) return;
  pumping_ = true;
  int err = perf_buffer__consume(pb_);
  bool ok = true;
  if (err < 0) ok = Fail(env, BpfFailure{"perf_buffer__consume", err, ""});
  if (uint64_t unbatched = batcher_.TakeUnbatched(); unbatched != 0) {
    lost_ += unbatched;
    if (ok) {
      ok = Fail(env, BpfFailure{"copy perf buffer samples into a batch: out of memory; " + std::to_string(unbatched) +
                                    " samples dropped (counted as lost)", ENOMEM, ""});
    }
  }
  // after a throwing error callback, the batch waits for the next pump
  if (ok && (!batcher_.empty() || lost_ != 0)) {
    uint64_t lost = lost_;
    lost_ = 0;
    batcher_.Deliver(env, callback_, *context_, lost);
  }
  pumping_ = false;
}

void PerfBuffer::PumpFromLoop() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  Pump(env);
  RaiseUncaught(env);
}

void PerfBuffer::OnReadable(uv_poll_t* poll, int status, int) {
  if (status < 0) return;
  static_cast<PerfBuffer*>(poll->data)->PumpFromLoop();
}

Napi::Value PerfBuffer::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (pb_ == nullptr) ThrowBpfError(env, "start of a closed perf buffer consumer", EBADF);
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  if (poll_ == nullptr) {
    poll_ = new uv_poll_t;
    uv_poll_init(loop, poll_, perf_buffer__epoll_fd(pb_));
    poll_->data = this;
    self_ = Napi::Persistent(info.This().As<Napi::Object>());
  }
  uv_poll_start(poll_, UV_READABLE, OnReadable);
  idle_.Start(loop, this, [](void* owner) { static_cast<PerfBuffer*>(owner)->PumpFromLoop(); });
  return env.Undefined();
}

Napi::Value PerfBuffer::Pause(const Napi::CallbackInfo& info) {
  idle_.Stop();
  if (poll_ != nullptr) uv_poll_stop(poll_);
  return info.Env().Undefined();
}

// drain(): like RingBuffer's; an exception from the callback reaches the caller, and the batch
// it was handed is not delivered again
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
