/**
 * A bounded export queue for one signal. Items wait here until a batch is acknowledged by the
 * destination, so a Collector outage costs memory bounded by `capacity + maxBatch` items and
 * nothing more. When the queue is full the oldest item goes first (fresh data is worth more during
 * an incident) and every drop is counted.
 *
 * Sending is strictly one batch at a time: ordering is kept and a failing destination is probed by
 * one request per backoff step, not hammered by a burst.
 */
import type { Signal } from './config.ts'
import type { TelemetryLog } from './log.ts'

export interface QueueStats {
  /** Items waiting, not counting the batch in flight. */
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
  intervalMs: number
  initialBackoffMs: number
  maxBackoffMs: number
  /** Resolves when the destination accepted the batch; rejects with a reason otherwise. */
  send: (batch: T[]) => Promise<void>
  log: TelemetryLog
}

export class ExportQueue<T> {
  readonly signal: Signal
  readonly destination: string
  private readonly options: ExportQueueOptions<T>
  private items: T[] = []
  private head = 0
  private inFlight: T[] | undefined
  private sent = 0
  private failedExports = 0
  private dropped = 0
  private droppedAtShutdown = 0
  private rejected = 0
  private consecutiveFailures = 0
  private backoffUntil = 0
  private timer: NodeJS.Timeout | undefined
  private closed = false
  private idleWaiters: (() => void)[] = []

  constructor(options: ExportQueueOptions<T>) {
    this.options = options
    this.signal = options.signal
    this.destination = options.destination
    this.schedule(options.intervalMs)
  }

  get length(): number {
    return this.items.length - this.head
  }

  push(items: readonly T[]): void {
    if (this.closed) {
      this.dropped += items.length
      return
    }
    for (const item of items) this.items.push(item)
    this.trimOverflow()
    if (this.length >= this.options.maxBatch && this.inFlight === undefined && Date.now() >= this.backoffUntil) {
      this.schedule(0)
    }
  }

  stats(): QueueStats {
    return {
      queued: this.length,
      inFlight: this.inFlight?.length ?? 0,
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
    while ((this.length > 0 || this.inFlight !== undefined) && Date.now() < deadline) {
      if (this.inFlight === undefined) {
        const wait = this.backoffUntil - Date.now()
        if (wait > 0) {
          if (Date.now() + wait >= deadline) return
          await sleep(wait)
          continue
        }
        void this.sendOne()
      }
      await this.waitIdle(deadline)
    }
  }

  /** Flushes within the deadline, then counts whatever is left as dropped at shutdown. */
  async close(deadline: number): Promise<void> {
    await this.flush(deadline)
    this.closed = true
    clearTimeout(this.timer)
    const left = this.length + (this.inFlight?.length ?? 0)
    if (left > 0) {
      this.droppedAtShutdown += left
      this.options.log(
        'warn',
        `${this.signal}: ${left} item(s) not exported before the shutdown deadline to ${this.destination}; they are counted as dropped. Give shutdown a longer deadline or check the destination`,
      )
    }
    this.items = []
    this.head = 0
  }

  private trimOverflow(): void {
    const over = this.length - this.options.capacity
    if (over <= 0) return
    this.head += over
    this.dropped += over
    if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
  }

  private schedule(delayMs: number): void {
    if (this.closed) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => this.tick(), delayMs)
    // the exporter must never be what keeps a finished process alive
    this.timer.unref()
  }

  private tick(): void {
    if (this.inFlight === undefined && this.length > 0 && Date.now() >= this.backoffUntil) {
      void this.sendOne()
      return
    }
    this.schedule(Math.max(this.options.intervalMs, this.backoffUntil - Date.now()))
  }

  private async sendOne(): Promise<void> {
    if (this.inFlight !== undefined || this.length === 0) return
    const end = Math.min(this.items.length, this.head + this.options.maxBatch)
    const batch = this.items.slice(this.head, end)
    this.head = end
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    }
    this.inFlight = batch
    try {
      await this.options.send(batch)
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
    } catch (error) {
      this.failedExports++
      if ((error as { retryable?: unknown })?.retryable === false) {
        this.rejected += batch.length
        this.options.log(
          'error',
          `${this.signal}: ${this.destination} refused ${batch.length} item(s) for good: ${describeError(error)}. They are counted as rejected, not retried; this usually means a Periscope bug or a Collector that does not accept this signal`,
        )
        return
      }
      this.consecutiveFailures++
      // the batch goes back in front: it is the oldest data, so it is also the first to be dropped
      this.items = batch.concat(this.items.slice(this.head))
      this.head = 0
      this.trimOverflow()
      const backoff = Math.min(
        this.options.maxBackoffMs,
        this.options.initialBackoffMs * 2 ** Math.min(this.consecutiveFailures - 1, 20),
      )
      this.backoffUntil = Date.now() + backoff * (0.8 + Math.random() * 0.4)
      if (this.consecutiveFailures === 1 || this.consecutiveFailures % 20 === 0) {
        this.options.log(
          'warn',
          `${this.signal}: export to ${this.destination} failed: ${describeError(error)}. Retrying with backoff; up to ${this.options.capacity} item(s) are kept and the oldest beyond that are dropped and counted. Check that the Collector is running and reachable, and the endpoint settings (OTEL_EXPORTER_OTLP_ENDPOINT or exporter.endpoint in periscope.yaml)`,
        )
      }
    } finally {
      this.inFlight = undefined
      const waiters = this.idleWaiters
      this.idleWaiters = []
      for (const wake of waiters) wake()
      const next = this.length >= this.options.maxBatch ? Math.max(0, this.backoffUntil - Date.now()) : this.options.intervalMs
      this.schedule(Math.max(next, this.backoffUntil - Date.now()))
    }
  }

  private waitIdle(deadline: number): Promise<void> {
    if (this.inFlight === undefined) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))
      this.idleWaiters.push(() => {
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
