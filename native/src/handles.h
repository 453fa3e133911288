// SPDX-License-Identifier: Apache-2.0
// The addon's wrapped nouns, mirroring libbpf: Object owns its Programs, Maps and Links.
// Programs and Maps hold a strong reference to their Object, so the bpf_object outlives every
// handle into it; an Object holds its Links until they are detached or the Object is closed.
#pragma once
#include <bpf/libbpf.h>
#include <napi.h>
#include <uv.h>

#include <set>
#include <string>
#include <vector>

namespace periscope {

class Link;
struct BpfFailure;  // errors.h

class Object : public Napi::ObjectWrap<Object> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Object(const Napi::CallbackInfo& info);
  ~Object() override;

  bpf_object* handle(Napi::Env env);  // throws when closed or mid-load
  bool loaded() const { return loaded_; }
  void adopt(Napi::Env env, Link* link, Napi::Object js);
  void forget(Link* link);

 private:
  Napi::Value Load(const Napi::CallbackInfo& info);
  Napi::Value Programs(const Napi::CallbackInfo& info);
  Napi::Value Maps(const Napi::CallbackInfo& info);
  Napi::Value Name(const Napi::CallbackInfo& info);
  Napi::Value Btf(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void CloseAll();

  bpf_object* obj_ = nullptr;
  bool loaded_ = false;
  bool loading_ = false;
  std::set<Link*> links_;
  std::vector<Napi::ObjectReference> link_refs_;
  friend class LoadWorker;
};

class Program : public Napi::ObjectWrap<Program> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::FunctionReference constructor;
  explicit Program(const Napi::CallbackInfo& info);
  void Bind(Napi::Object owner, Object* object, bpf_program* prog);

 private:
  bpf_program* handle(Napi::Env env);
  Napi::Value Describe(const Napi::CallbackInfo& info);
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value GetAutoload(const Napi::CallbackInfo& info);
  void SetAutoload(const Napi::CallbackInfo& info, const Napi::Value& value);
  Napi::Value SetExpectedAttachType(const Napi::CallbackInfo& info);
  Napi::Value SetAttachTarget(const Napi::CallbackInfo& info);
  Napi::Value AttachTracepoint(const Napi::CallbackInfo& info);
  Napi::Value AttachRawTracepoint(const Napi::CallbackInfo& info);
  Napi::Value AttachTrace(const Napi::CallbackInfo& info);
  Napi::Value AttachKprobe(const Napi::CallbackInfo& info);
  Napi::Value AttachUprobe(const Napi::CallbackInfo& info);
  Napi::Value AttachUprobeMulti(const Napi::CallbackInfo& info);
  Napi::Value AttachPerfEvent(const Napi::CallbackInfo& info);
  Napi::Value AttachCgroup(const Napi::CallbackInfo& info);
  Napi::Value AttachTc(const Napi::CallbackInfo& info);
  Napi::Value AttachIter(const Napi::CallbackInfo& info);
  Napi::Value TestRun(const Napi::CallbackInfo& info);
  Napi::Value RunStats(const Napi::CallbackInfo& info);
  Napi::Value Wrap(Napi::Env env, bpf_link* link, const std::string& op, const std::string& log);

  Napi::ObjectReference owner_;
  Object* object_ = nullptr;
  bpf_program* prog_ = nullptr;
};

class Map : public Napi::ObjectWrap<Map> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::FunctionReference constructor;
  explicit Map(const Napi::CallbackInfo& info);
  void Bind(Napi::Object owner, Object* object, bpf_map* map);

 private:
  bpf_map* handle(Napi::Env env);
  int fd(Napi::Env env);
  size_t ValueBytes(Napi::Env env);
  Napi::Value Describe(const Napi::CallbackInfo& info);
  Napi::Value SetMaxEntries(const Napi::CallbackInfo& info);
  Napi::Value InitialValue(const Napi::CallbackInfo& info);
  Napi::Value SetInitialValue(const Napi::CallbackInfo& info);
  Napi::Value Lookup(const Napi::CallbackInfo& info);
  Napi::Value Update(const Napi::CallbackInfo& info);
  Napi::Value Delete(const Napi::CallbackInfo& info);
  Napi::Value NextKey(const Napi::CallbackInfo& info);
  Napi::Value LookupBatch(const Napi::CallbackInfo& info);

  Napi::ObjectReference owner_;
  Object* object_ = nullptr;
  bpf_map* map_ = nullptr;
};

class Link : public Napi::ObjectWrap<Link> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::FunctionReference constructor;
  explicit Link(const Napi::CallbackInfo& info);
  ~Link() override;
  void BindLink(Object* owner, bpf_link* link, std::string kind);
  // A link the addon created itself (BPF_LINK_CREATE of a type libbpf 1.1 cannot make): closing
  // its fd detaches it, as bpf_link__destroy would.
  void BindFd(Object* owner, int fd, std::string kind);
  void BindTc(Object* owner, const bpf_tc_hook& hook, const bpf_tc_opts& opts);
  // Detaches without touching the owner's bookkeeping; used when the owner closes.
  void Release();

 private:
  Napi::Value Detach(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value IterCreate(const Napi::CallbackInfo& info);
  bool attached() const { return link_ != nullptr || fd_ >= 0 || tc_; }
  int fd() const { return link_ != nullptr ? bpf_link__fd(link_) : fd_; }

  Object* owner_ = nullptr;
  bpf_link* link_ = nullptr;
  int fd_ = -1;
  bool tc_ = false;
  bpf_tc_hook tc_hook_{};
  bpf_tc_opts tc_opts_{};
  std::string kind_;
};

// A batch holds records back to back, each an 8-byte header (u32 length) then the record padded
// to 8: the kernel ring buffer's own layout, which runtime/bpf/batch.ts describes.
constexpr size_t kRecordHeaderBytes = 8;
constexpr size_t RecordStride(size_t size) { return kRecordHeaderBytes + ((size + 7) & ~size_t{7}); }

// The perf buffer consumer's batch: records are copied in, in the ring buffer's layout.
class RecordBatcher {
 public:
  explicit RecordBatcher(size_t capacity);
  ~RecordBatcher();
  // False when the batch could not grow (out of memory): the sample is dropped and counted.
  bool Append(const void* data, size_t size);
  bool empty() const { return count_ == 0; }
  // Samples dropped for lack of memory since the last call.
  uint64_t TakeUnbatched();
  // Hands the filled buffer to JS as an ArrayBuffer (no copy) and starts a new one; false when
  // the callback threw (the exception stays pending).
  bool Deliver(Napi::Env env, Napi::FunctionReference& callback, Napi::AsyncContext& context, uint64_t lost);

 private:
  uint8_t* data_ = nullptr;
  size_t capacity_;
  size_t allocated_ = 0;
  size_t used_ = 0;
  uint32_t count_ = 0;
  uint64_t unbatched_ = 0;
};

// The kernel wakes consumers through irq_work, which can wait for the next timer tick on an idle
// CPU (seen on VMs without a self-IPI): the last records of a burst may sit unannounced. Like
// libbpf's own poll timeouts, a slow timer drains whatever arrived without a wake-up.
constexpr uint64_t kIdleDrainMs = 100;

class IdleDrain {
 public:
  void Start(uv_loop_t* loop, void* owner, void (*drain)(void* owner), uint64_t every_ms = kIdleDrainMs);
  void Stop();
  void Close();

 private:
  uv_timer_t* timer_ = nullptr;
  void* owner_ = nullptr;
  void (*drain_)(void*) = nullptr;
};

// Hands an exception that a batch callback left pending to process 'uncaughtException', as Node
// does for a timer callback that throws. For libuv callbacks, where nothing on the stack can
// catch it: a C++ exception thrown there would abort the process.
void RaiseUncaught(Napi::Env env);

// Reads a BPF ring buffer map in place: its data pages are mapped once, so the committed records
// between the consumer and producer positions are one contiguous span up to the end of the data.
// Each batch is such a span, lent to JS as an external ArrayBuffer for the duration of the
// callback (then detached) and only then released to the kernel: no copy per record, one call per
// batch. A record that wraps around the end is copied and goes alone.
// The batch format is the kernel's own record header (u32 length with the busy and discard
// bits, u32 page offset), which runtime/bpf/batch.ts describes. The consumer holds its own
// duplicate of the map fd and its own mapping, so the object may close before or during a read.
class RingBuffer : public Napi::ObjectWrap<RingBuffer> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit RingBuffer(const Napi::CallbackInfo& info);
  ~RingBuffer() override;

 private:
  static void OnReadable(uv_poll_t* poll, int status, int events);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Pause(const Napi::CallbackInfo& info);
  Napi::Value Drain(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  // Delivers until the ring is empty, `max_batches` were delivered or a callback threw.
  void Pump(Napi::Env env, int max_batches);
  // Lends `bytes` of records to the callback, then releases the ring up to `end` to the kernel
  // whatever the callback did; false when it threw.
  bool Deliver(Napi::Env env, uint8_t* records, size_t bytes, unsigned long end, uint32_t count);
  bool DeliverWrapped(Napi::Env env, unsigned long start, unsigned long end);
  void PumpFromLoop();
  void StopWatching();
  void Unmap();

  int map_fd_ = -1;  // our duplicate, polled and closed by us
  size_t page_size_ = 0;
  size_t mask_ = 0;
  size_t batch_bytes_ = 0;
  unsigned long* consumer_pos_ = nullptr;
  unsigned long* producer_pos_ = nullptr;
  uint8_t* data_ = nullptr;
  // a record that wraps around the end of the data, copied whole
  std::vector<uint8_t> wrapped_;
  uv_poll_t* poll_ = nullptr;
  IdleDrain idle_;
  // a ring whose program wakes the reader only once much is waiting is read on this timer
  uint64_t idle_drain_ms_ = kIdleDrainMs;
  bool pumping_ = false;
  bool closed_ = false;
  Napi::FunctionReference callback_;
  Napi::AsyncContext* context_ = nullptr;
  Napi::ObjectReference self_;
};

// Like RingBuffer, it holds its own duplicate of the map fd, so the object may close first.
class PerfBuffer : public Napi::ObjectWrap<PerfBuffer> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit PerfBuffer(const Napi::CallbackInfo& info);
  ~PerfBuffer() override;

 private:
  static void OnSample(void* ctx, int cpu, void* data, __u32 size);
  static void OnLost(void* ctx, int cpu, __u64 count);
  static void OnReadable(uv_poll_t* poll, int status, int events);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Pause(const Napi::CallbackInfo& info);
  Napi::Value Drain(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void Pump(Napi::Env env);
  void PumpFromLoop();
  // Hands `failure` to the callback; false when it threw.
  bool Fail(Napi::Env env, const BpfFailure& failure);
  void Shutdown();

  int map_fd_ = -1;  // our duplicate, which perf_buffer__free deletes its entries through
  perf_buffer* pb_ = nullptr;
  uv_poll_t* poll_ = nullptr;
  IdleDrain idle_;
  RecordBatcher batcher_;
  uint64_t lost_ = 0;
  bool pumping_ = false;
  Napi::FunctionReference callback_;
  Napi::AsyncContext* context_ = nullptr;
  Napi::ObjectReference self_;
};

Napi::Value BtfTypes(const Napi::CallbackInfo& info);
Napi::Array DescribeBtf(Napi::Env env, const btf* types);  // btf.cc
Napi::Value SetProcessCredentials(const Napi::CallbackInfo& info);  // capabilities.cc
Napi::Value SetAmbientCapabilities(const Napi::CallbackInfo& info);  // capabilities.cc
Napi::Value WithFreshNetworkNamespace(const Napi::CallbackInfo& info);  // namespaces.cc
Napi::Value ClockGettime(const Napi::CallbackInfo& info);  // clock.cc
Napi::Value TrimHeap(const Napi::CallbackInfo& info);  // heap_trim.cc
Napi::Value EnableStats(const Napi::CallbackInfo& info);   // program.cc
Napi::Object InitProbes(Napi::Env env, Napi::Object exports);
// libbpf's name of an attach or link type, or for types newer than libbpf 1.1 the name newer
// libbpf gives them (probes.cc); nullptr for types neither knows.
const char* AttachTypeName(int type);
const char* LinkTypeName(int type);

// Reads a Uint8Array / Buffer argument as raw bytes, checking only its type (TypeScript checks sizes).
struct Bytes {
  const uint8_t* data;
  size_t size;
};
Bytes ArgBytes(const Napi::CallbackInfo& info, size_t index, const char* what);

}  // namespace periscope
