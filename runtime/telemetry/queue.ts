/**
 * A bounded export queue for one signal. Items wait here until a batch is acknowledged by the
 * destination, so a Collector outage costs memory bounded by `capacity + maxInFlight × maxBatch`
 * items and nothing more. When the queue is full the oldest item goes first (fresh data is worth
 * more during an incident) and every drop is counted.
 *
 * The items wait in a ring that grows up to `capacity` slots; a sent item's slot is cleared when
 * its batch is taken, so nothing the destination has is kept alive by the queue, however long
 * the queue stays non-empty under load.
 *
 * Up to `maxInFlight` batches are sent at once, so the next batch is serialised and sent while the
 * destination still works on the previous one. A full batch goes as soon as the event loop is free;
 * a partial one waits for the interval. A failing destination is probed by one request per backoff
 * step, not hammered by a burst.
 */
import type { Signal } from './config.ts'
import type { TelemetryLog } from './log.ts'

export interface QueueStats {
  /** Items waiting, not counting the batches in flight. */
  queued: number
  inFlight: number
  capacity: number
  /** Items acknowledged by the destination. */
  sent: number
  /** Export attempts that failed (each is retried with backoff). */
  failedExports: number
  /** Items dropped because the queue was full. */
  dropped: number
  /** Items still queued when shutdown's deadline passed. */
  droppedAtShutdown: number
  /** Items the destination refused for good (e.g. HTTP 400); retrying would not help. */
  rejected: number
}

export interface ExportQueueOptions<T> {
  signal: Signal
  /** Where batches go, for messages: a URL or a file path. */
  destination: string
  capacity: number
  maxBatch: number
  /** Batches sent at once while the destination answers; 1 while it is failing. */
  maxInFlight: number
  intervalMs: number
  initialBackoffMs: number
  maxBackoffMs: number
  /** Resolves when the destination accepted the batch; rejects with a reason otherwise. */
  send: (batch: T[]) => Promise<void>
  log: TelemetryLog
}

/** The slots a ring starts with; it doubles up to the queue's capacity as the backlog grows. */
const INITIAL_SLOTS = 1024

export class ExportQueue<T> {
  readonly signal: Signal
  readonly destination: string
  private readonly options: ExportQueueOptions<T>
  /** Waiting items, oldest at `start`, `count` of them, wrapping around. */
  private ring: (T | undefined)[]
  private start = 0
  private count = 0
  /**
   * Failed batches waiting to be retried, oldest first (by when they were first taken). They are
   * older than everything in the ring, and go first.
   */
  private retries: { seq: number; items: T[] }[] = []
  private retryCount = 0
  private nextSeq = 0
  private flights = 0
  private itemsInFlight = 0
  private sent = 0
  private failedExports = 0
  private dropped = 0
  private droppedAtShutdown = 0
  private rejected = 0
  private consecutiveFailures = 0
  private backoffUntil = 0
  private readonly interval: NodeJS.Timeout
  private backoffTimer: NodeJS.Timeout | undefined
  private eager: NodeJS.Immediate | undefined
  private closed = false
  private settledWaiters: (() => void)[] = []

  constructor(options: ExportQueueOptions<T>) {
    this.options = options
    this.signal = options.signal
    this.destination = options.destination
    this.ring = new Array<T | undefined>(Math.min(options.capacity, INITIAL_SLOTS))
    this.interval = setInterval(() => this.pump(true), options.intervalMs)
    // the exporter must never be what keeps a finished process alive
    this.interval.unref()
  }

  get length(): number {
    return this.count + this.retryCount
  }

  push(items: readonly T[]): void {
    if (this.closed) {
      this.dropped += items.length
      return
    }
    for (const item of items) this.append(item)
    if (this.length >= this.options.maxBatch && this.eager === undefined && this.canStart()) {
      // after the current task, so the caller (a plugin's batch) finishes before serialising starts
      this.eager = setImmediate(() => {
        this.eager = undefined
        this.pump(false)
      })
      this.eager.unref()
    }
  }

  stats(): QueueStats {
    return {
      queued: this.length,
      inFlight: this.itemsInFlight,
      capacity: this.options.capacity,
      sent: this.sent,
      failedExports: this.failedExports,
      dropped: this.dropped,
      droppedAtShutdown: this.droppedAtShutdown,
      rejected: this.rejected,
    }
  }

  /**
   * Sends everything queued now, ignoring the batching interval but not the backoff of a failing
   * destination. Resolves when the queue is empty or the deadline passes, whichever is first.
   */
  async flush(deadline: number): Promise<void> {
    while ((this.length > 0 || this.flights > 0) && Date.now() < deadline) {
      const wait = this.backoffUntil - Date.now()
      if (wait > 0 && this.flights === 0) {
        if (Date.now() + wait >= deadline) return
        await sleep(wait)
        continue
      }
      while (this.length > 0 && this.canStart()) this.startFlight()
      await this.nextSettled(deadline)
    }
  }

  /** Flushes within the deadline, then counts whatever is left as dropped at shutdown. */
  async close(deadline: number): Promise<void> {
    await this.flush(deadline)
    this.closed = true
    clearInterval(this.interval)
    clearTimeout(this.backoffTimer)
    if (this.eager !== undefined) clearImmediate(this.eager)
    const left = this.length + this.itemsInFlight
    if (left > 0) {
      this.droppedAtShutdown += left
      this.options.log(
        'warn',
        `${this.signal}: ${left} item(s) not exported before the shutdown deadline to ${this.destination}; they are counted as dropped. Give shutdown a longer deadline or check the destination`,
      )
    }
    this.ring = []
    this.start = 0
    this.count = 0
    this.retries = []
    this.retryCount = 0
  }

  /** Adds the newest item; a full queue drops its oldest first. */
  private append(item: T): void {
    if (this.length === this.options.capacity) this.dropOldest()
    if (this.count === this.ring.length) this.grow()
    this.ring[(this.start + this.count) % this.ring.length] = item
    this.count++
  }

  private dropOldest(): void {
    this.dropped++
    const oldest = this.retries[0]
    if (oldest !== undefined) {
      oldest.items.shift()
      this.retryCount--
      if (oldest.items.length === 0) this.retries.shift()
      return
    }
    this.ring[this.start] = undefined
    this.start = (this.start + 1) % this.ring.length
    this.count--
  }

  /**
   * Puts a failed batch back before everything newer: it is the oldest data, so it is also the
   * first to be dropped when the queue overflows.
   */
  private requeue(seq: number, items: T[]): void {
    let at = this.retries.length
    while (at > 0 && this.retries[at - 1]!.seq > seq) at--
    this.retries.splice(at, 0, { seq, items })
    this.retryCount += items.length
    while (this.length > this.options.capacity) this.dropOldest()
  }

  private grow(): void {
    const grown = new Array<T | undefined>(Math.min(this.options.capacity, this.ring.length * 2))
    for (let i = 0; i < this.count; i++) grown[i] = this.ring[(this.start + i) % this.ring.length]
    this.ring = grown
    this.start = 0
  }

  /** Takes the oldest items: a batch to retry, else up to one batch from the ring, clearing its slots. */
  private take(): { seq: number; items: T[] } {
    const retry = this.retries.shift()
    if (retry !== undefined) {
      this.retryCount -= retry.items.length
      return retry
    }
    const size = Math.min(this.count, this.options.maxBatch)
    const items = new Array<T>(size)
    for (let i = 0; i < size; i++) {
      items[i] = this.ring[this.start] as T
      this.ring[this.start] = undefined
      this.start = (this.start + 1) % this.ring.length
    }
    this.count -= size
    return { seq: this.nextSeq++, items }
  }

  /** A failing destination gets one request at a time, and none before its backoff ends. */
  private canStart(): boolean {
    if (this.closed || Date.now() < this.backoffUntil) return false
    return this.flights < (this.consecutiveFailures > 0 ? 1 : this.options.maxInFlight)
  }

  /** Starts full batches while a flight is free; `partial` also sends what is left (the interval passed). */
  private pump(partial: boolean): void {
    while (this.canStart() && (this.length >= this.options.maxBatch || (partial && this.length > 0))) {
      this.startFlight()
    }
  }

  private startFlight(): void {
    const { seq, items: batch } = this.take()
    // a failed batch is requeued as it is, and the queue may then drop from it
    const size = batch.length
    this.flights++
    this.itemsInFlight += size
    let sending: Promise<void>
    try {
      sending = this.options.send(batch)
    } catch (error) {
      sending = Promise.reject(error)
    }
    void sending.then(
      () => this.accepted(batch),
      (error: unknown) => this.failed(seq, batch, error),
    ).finally(() => {
      this.flights--
      this.itemsInFlight -= size
      const waiters = this.settledWaiters
      this.settledWaiters = []
      for (const wake of waiters) wake()
      this.pump(false)
    })
  }

  private accepted(batch: T[]): void {
    this.sent += batch.length
    // close() gave up on this batch at its deadline, but it made it after all
    if (this.closed) this.droppedAtShutdown -= batch.length
    if (this.consecutiveFailures > 0) {
      this.options.log(
        'info',
        `${this.signal}: export to ${this.destination} recovered after ${this.consecutiveFailures} failed attempt(s); ${this.dropped} item(s) dropped so far`,
      )
    }
    this.consecutiveFailures = 0
    this.backoffUntil = 0
  }

  private failed(seq: number, batch: T[], error: unknown): void {
    this.failedExports++
    if ((error as { retryable?: unknown })?.retryable === false) {
      this.rejected += batch.length
      if (this.closed) this.droppedAtShutdown -= batch.length
      this.options.log(
        'error',
        `${this.signal}: ${this.destination} refused ${batch.length} item(s) for good: ${describeError(error)}. They are counted as rejected, not retried; this usually means a Periscope bug or a Collector that does not accept this signal`,
      )
      return
    }
    this.consecutiveFailures++
    // after close() the batch is already counted as dropped at shutdown
    if (!this.closed) this.requeue(seq, batch)
    const backoff = Math.min(
      this.options.maxBackoffMs,
      this.options.initialBackoffMs * 2 ** Math.min(this.consecutiveFailures - 1, 20),
    )
    this.backoffUntil = Date.now() + backoff * (0.8 + Math.random() * 0.4)
    if (!this.closed) {
      clearTimeout(this.backoffTimer)
      this.backoffTimer = setTimeout(() => this.pump(true), this.backoffUntil - Date.now())
      this.backoffTimer.unref()
    }
    if (this.consecutiveFailures === 1 || this.consecutiveFailures % 20 === 0) {
      this.options.log(
        'warn',
        `${this.signal}: export to ${this.destination} failed: ${describeError(error)}. Retrying with backoff; up to ${this.options.capacity} item(s) are kept and the oldest beyond that are dropped and counted. Check that the Collector is running and reachable, and the endpoint settings (OTEL_EXPORTER_OTLP_ENDPOINT or exporter.endpoint in periscope.yaml)`,
      )
    }
  }

  /** Resolves when a batch in flight settles, or at the deadline; at once when none is in flight. */
  private nextSettled(deadline: number): Promise<void> {
    if (this.flights === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))
      this.settledWaiters.push(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }
}

export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code
    const cause = (error as { cause?: unknown }).cause
    let text = error.message
    if (typeof code === 'string' && !text.includes(code)) text = `${code}: ${text}`
    if (cause instanceof Error && !text.includes(cause.message)) text += ` (${describeError(cause)})`
    return text
  }
  return String(error)
}

// ref'd on purpose: a caller is awaiting the flush, so the process must stay up for it
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
