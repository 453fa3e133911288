/**
 * Waiting for a condition in tests and peer harnesses: readiness is polled, never slept for. One
 * loop for every peer (servers starting, clients getting ready, spans arriving), so each says what
 * it waited for and what it saw when the time ran out.
 */
import { setTimeout as sleep } from 'node:timers/promises'

export interface PollOptions {
  /** What is awaited, for the error: "postgres to accept connections on 127.0.0.1:5432". */
  what: string
  timeoutMs: number
  /** Between checks; short for cheap checks, longer for ones that run a client or read files. */
  intervalMs?: number
  /** A reason to stop waiting at once (the server exited), or undefined to go on. */
  failed?: () => string | undefined
  /** What to add to the error (a log tail). */
  details?: () => string
}

/** Resolves once `condition` holds; rejects when `failed` gives a reason or the time is up. */
export async function pollUntil(condition: () => boolean | Promise<boolean>, options: PollOptions): Promise<void> {
  const deadline = Date.now() + options.timeoutMs
  for (;;) {
    if (await condition()) return
    const failure = options.failed?.()
    const extra = options.details === undefined ? '' : `\n${options.details()}`
    if (failure !== undefined) throw new Error(`${failure} while waiting for ${options.what}${extra}`)
    if (Date.now() > deadline) throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what}${extra}`)
    await sleep(options.intervalMs ?? 20)
  }
}
