/**
 * Starts the plugin runtime for a test: a provider (the synthetic one, or the real library), a
 * fresh plugins directory, a memory sink and a memory log. Kernel tests pass the real provider and
 * the generated decoders; everything else is the same.
 *
 *   const h = await startHarness({ provider: new SyntheticProvider(), plugins: { 'count.ts': src } })
 *   await h.waitFor(() => h.sink.signals('count').metrics.length >= 3)
 *   await h.close()
 */
import { rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ObjectProvider } from '../runtime/bus.ts'
import { parseConfig } from '../runtime/config/index.ts'
import type { HostEvent } from '../runtime/plugins/host.ts'
import { memoryLogger } from '../runtime/plugins/log.ts'
import { MemorySink } from '../runtime/plugins/sink.ts'
import { type Runtime, startRuntime } from '../runtime/run.ts'
import { scratchDir } from './peers/scratch-dir.ts'

export const fixtureDecoders = path.join(path.dirname(fileURLToPath(import.meta.url)), 'plugin-fixtures', 'decoders.ts')

export interface HarnessOptions {
  provider: ObjectProvider
  /** Files to write into the plugins directory before starting, by file name. */
  plugins?: Record<string, string>
  /** periscope.yaml as an object, checked by the real schema (durations as strings, etc.). */
  config?: Record<string, unknown>
  /** Defaults to the fixture decoders; kernel tests pass bpf/lib/index.types.ts. */
  decodersPath?: string
  adminSocket?: boolean
  backoffMs?: number
}

export interface Harness {
  runtime: Runtime
  dir: string
  sink: MemorySink
  log: ReturnType<typeof memoryLogger>
  events: HostEvent[]
  write(file: string, source: string): string
  remove(file: string): void
  /** Polls `predicate` until it holds; fails with `what` and the runtime log after `timeoutMs`. */
  waitFor(predicate: () => boolean, what?: string, timeoutMs?: number): Promise<void>
  /** Waits for the next host event of `type` for `plugin`, counting only events after this call. */
  nextEvent(type: HostEvent['type'], plugin?: string, timeoutMs?: number): Promise<HostEvent>
  close(): Promise<void>
}

export async function startHarness(options: HarnessOptions): Promise<Harness> {
  // removed by close(), or at exit for a test that never gets there
  const dir = scratchDir('periscope-plugins-')
  for (const [name, source] of Object.entries(options.plugins ?? {})) writeFileSync(path.join(dir, name), source)
  const sink = new MemorySink()
  const log = memoryLogger()
  const events: HostEvent[] = []
  const waiters: ((e: HostEvent) => void)[] = []
  let runtime: Runtime
  try {
    const started = startRuntime({
      provider: options.provider,
      sink,
      log,
      pluginDirs: [dir],
      config: parseConfig(options.config ?? {}, 'harness config'),
      decodersPath: options.decodersPath ?? fixtureDecoders,
      adminSocket: options.adminSocket === true ? path.join(dir, '.admin', 'admin.sock') : false,
      backoff: { initialMs: options.backoffMs ?? 50, maxMs: 1000 },
      keepCapabilities: true,
    })
    runtime = await started
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
  for (const type of ['loaded', 'failed', 'rejected', 'unloaded'] as const) {
    runtime.manager.on(type, (e: HostEvent) => {
      events.push(e)
      for (const w of waiters.splice(0)) w(e)
    })
  }
  const logText = () => log.lines.map((l) => `  ${l.level}: ${l.message}`).join('\n')
  return {
    runtime, dir, sink, log, events,
    write(file, source) {
      const at = path.join(dir, file)
      writeFileSync(at, source)
      return at
    },
    remove(file) {
      rmSync(path.join(dir, file))
    },
    async waitFor(predicate, what = 'condition', timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; runtime log:\n${logText()}`)
        await new Promise((r) => setTimeout(r, 5))
      }
    },
    nextEvent(type, plugin, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no '${type}' event for ${plugin ?? 'any plugin'} within ${timeoutMs} ms; runtime log:\n${logText()}`)), timeoutMs)
        const listen = (e: HostEvent) => {
          if (e.type === type && (plugin === undefined || ('plugin' in e && e.plugin === plugin))) {
            clearTimeout(timer)
            resolve(e)
          } else {
            waiters.push(listen)
          }
        }
        waiters.push(listen)
      })
    },
    async close() {
      try {
        await runtime.close()
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    },
  }
}
