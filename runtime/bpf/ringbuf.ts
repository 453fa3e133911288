/**
 * Ring and perf buffer consumers. Readiness comes from libbpf's epoll fd on the libuv loop
 * (no thread, no busy poll); records arrive as whole batches (batch.ts), never one call per
 * record. Use either `onBatch` (push) or `for await` (pull), not both.
 */
import { explain } from './errors.ts'
import type { RecordBatch } from './batch.ts'
import { native, type NativeBatchCallback, type NativeConsumer } from './native.ts'
import type { LoadedObject } from './object.ts'

export interface ReaderOptions {
  /** Target bytes per batch (records are never split; one oversized record makes a bigger batch). */
  batchBytes?: number
  /**
   * Ring buffers: how often what arrived without a wake-up is read (100 ms). A ring whose program
   * wakes the reader only once much is waiting (stacks.bpf.c's wakeup_bytes) is read on this timer:
   * at 100 ms its samples came as 10 batches a second of a few records each.
   */
  idleDrainMs?: number
  /**
   * Called once per batch. If it throws, the batch still counts as consumed (it is never
   * delivered again), the failure is counted in `stats().listenerErrors` and reported to
   * `onError`, and the next batches arrive as usual.
   */
  onBatch?: (batch: RecordBatch) => void
  /**
   * Called when the kernel buffer cannot be read, or when `onBatch` threw (then `error.cause` is
   * what it threw). By default the error is printed to stderr with its stack.
   */
  onError?: (error: Error) => void
}

export interface ReaderStats {
  /** Records delivered (to onBatch or the queue), including those of batches whose listener threw. */
  received: number
  /** Records the kernel reported lost (perf buffers), or could not copy into a batch. */
  lost: number
  /** Batches whose onBatch threw. */
  listenerErrors: number
}

abstract class BatchReader implements AsyncIterable<RecordBatch> {
  readonly name: string
  #consumer: NativeConsumer | undefined
  #onBatch: ((batch: RecordBatch) => void) | undefined
  readonly #onError: (error: Error) => void
  readonly #queue: RecordBatch[] = []
  #wake: (() => void) | undefined
  #closed = false
  #received = 0
  #lost = 0
  #listenerErrors = 0

  constructor(name: string, options: ReaderOptions) {
    this.name = name
    this.#onBatch = options.onBatch
    this.#onError = options.onError ?? ((error) => console.error(error))
  }

  protected start(consumer: NativeConsumer): void {
    this.#consumer = consumer
    consumer.start()
  }

  // The addon's callback. Nothing may escape it: the addon would hand the exception to drain()'s
  // caller or to process 'uncaughtException', neither of which knows about this reader.
  protected readonly callback: NativeBatchCallback = (bufferOrError, byteLength, count, lost) => {
    if (bufferOrError instanceof Error) {
      this.#report(explain(bufferOrError, `read ${this.name}`))
      return
    }
    const batch: RecordBatch = { buffer: bufferOrError, byteLength: byteLength!, count: count!, lost: lost! }
    this.#received += batch.count
    this.#lost += batch.lost
    if (this.#onBatch !== undefined) {
      try {
        this.#onBatch(batch)
      } catch (error) {
        this.#listenerErrors++
        const message = error instanceof Error ? error.message : String(error)
        this.#report(new Error(`${this.name}: the batch listener threw: ${message} ` +
          `(its ${batch.count} records are consumed and will not be delivered again; the next batches will be)`, { cause: error }))
      }
      return
    }
    // ring buffer batches are lent only for this call; the queue keeps a copy
    this.#queue.push({ ...batch, buffer: batch.buffer.slice(0, batch.byteLength) })
    this.#wake?.()
  }

  stats(): ReaderStats {
    return { received: this.#received, lost: this.#lost, listenerErrors: this.#listenerErrors }
  }

  #report(error: Error): void {
    try {
      this.#onError(error)
    } catch (thrown) {
      console.error(`${this.name}: onError threw while reporting an error; both follow`, error, thrown)
    }
  }

  /** Stops reading; records stay in the kernel buffer until resume(). */
  pause(): void {
    this.#consumer?.pause()
  }

  resume(): void {
    if (!this.#closed) this.#consumer?.start()
  }

  /**
   * Delivers, synchronously, everything the kernel buffer holds right now. Called from inside
   * onBatch it does nothing (the delivery under way goes on), so no batch is handed out twice.
   */
  drain(): void {
    this.#consumer?.drain()
  }

  /**
   * Stops reading and releases the kernel buffer. A reader may outlive its object's close(): it
   * holds the map itself, so it still delivers what the buffer held, until it is closed too.
   * Closing twice does nothing.
   */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#consumer?.close()
    this.#wake?.()
  }

  async *[Symbol.asyncIterator](): AsyncIterator<RecordBatch> {
    if (this.#onBatch !== undefined) throw new Error(`${this.name} delivers to onBatch; it cannot also be iterated`)
    while (true) {
      const next = this.#queue.shift()
      if (next !== undefined) {
        yield next
        continue
      }
      if (this.#closed) return
      await new Promise<void>((resolve) => { this.#wake = resolve })
      this.#wake = undefined
    }
  }
}

// ring buffer batches are lent, not copied, so a large cap costs nothing but shortens the
// per-batch overhead; perf buffer batches are copies and rarely get near it
const DEFAULT_BATCH_BYTES = 1024 * 1024

/** Consumes a BPF_MAP_TYPE_RINGBUF map (Linux 5.8). */
export class RingBufferReader extends BatchReader {
  constructor(object: LoadedObject, map: string, options: ReaderOptions = {}) {
    super(`${object.name}:${map}`, options)
    const info = object.map(map).info
    if (info.type !== 'ringbuf') throw new Error(`${this.name} is a ${info.type} map, not a ring buffer`)
    try {
      this.start(new native.RingBuffer(info.fd, this.callback, options.batchBytes ?? DEFAULT_BATCH_BYTES, options.idleDrainMs))
    } catch (error) {
      throw explain(error, `open ring buffer ${this.name}`)
    }
  }
}

/** Consumes a BPF_MAP_TYPE_PERF_EVENT_ARRAY map (one buffer per CPU); reports lost samples. */
export class PerfBufferReader extends BatchReader {
  constructor(object: LoadedObject, map: string, options: ReaderOptions & { pagesPerCpu?: number } = {}) {
    super(`${object.name}:${map}`, options)
    const info = object.map(map).info
    if (info.type !== 'perf_event_array') throw new Error(`${this.name} is a ${info.type} map, not a perf event array`)
    try {
      this.start(new native.PerfBuffer(info.fd, options.pagesPerCpu ?? 64, this.callback, options.batchBytes ?? DEFAULT_BATCH_BYTES))
    } catch (error) {
      throw explain(error, `open perf buffer ${this.name}`)
    }
  }
}
