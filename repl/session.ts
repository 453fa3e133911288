/**
 * The runtime the REPL looks into: a running `periscope run` over its admin socket, or, when none
 * answers there, a runtime in this process, started on first use with no plugins (so a REPL that
 * only traces loads nothing it does not need). Both answer the same methods
 * (runtime/admin/methods.ts), so `plugins()` or `plugin.load()` read the same either way.
 */
import { connectAdmin } from '../runtime/admin/client.ts'
import { stateMethods } from '../runtime/admin/methods.ts'
import { defaultSocketPath } from '../runtime/admin/socket-path.ts'
import type { PeriscopeConfig } from '../runtime/config/index.ts'
import type { Logger } from '../runtime/plugins/log.ts'
import type { Runtime } from '../runtime/run.ts'

export interface RuntimeSession {
  /** Where the answers come from, said once when the REPL starts. */
  readonly where: string
  call<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T>
  close(): Promise<void>
}

export interface SessionOptions {
  /** The admin socket of a running `periscope run`; defaults to where `periscope run` puts it. */
  socket?: string
  config?: PeriscopeConfig
  log: Logger
}

export async function openSession(options: SessionOptions): Promise<RuntimeSession> {
  const socket = options.socket ?? options.config?.admin?.socket ?? defaultSocketPath()
  try {
    const client = await connectAdmin(socket)
    return {
      where: `connected to the periscope run at ${socket}`,
      call: (method, params) => client.request(method, params),
      close: async () => client.close(),
    }
  } catch (error) {
    const why = (error as Error).message.replace(/^.*: /, '').replace(/;.*$/, '')
    return new InProcessSession(`no periscope run answers at ${socket} (${why}); objects, maps and plugins come from a runtime in this process`, options)
  }
}

class InProcessSession implements RuntimeSession {
  readonly where: string
  readonly #options: SessionOptions
  #started: Promise<{ runtime: Runtime; shutdown(): Promise<void> }> | undefined

  constructor(where: string, options: SessionOptions) {
    this.where = where
    this.#options = options
  }

  async call<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const answer = stateMethods.get(method)
    if (answer === undefined) throw new Error(`unknown runtime method '${method}'`)
    const { runtime } = await this.#start()
    return await answer({ manager: runtime.manager, bus: runtime.bus, pluginDirs: runtime.pluginDirs }, params) as T
  }

  #start(): Promise<{ runtime: Runtime; shutdown(): Promise<void> }> {
    this.#started ??= (async () => {
      const [{ startRuntime }, { createObjectProvider }, { createTelemetry }] = await Promise.all([
        import('../runtime/run.ts'), import('../runtime/library/index.ts'), import('../runtime/telemetry/index.ts'),
      ])
      const { log, config } = this.#options
      // signals go where `periscope run` would send them, but a REPL is too short-lived to be
      // scraped: no Prometheus endpoint unless the config asks for one
      const sink = await createTelemetry({ config: config?.exporter ?? { prometheus: { enabled: false } }, log: (level, message) => log[level](`telemetry: ${message}`) })
      try {
        // the REPL keeps its capabilities: trace() and one-liners attach programs all along
        const runtime = await startRuntime({ provider: await createObjectProvider((message) => log.warn(message)), sink, log, pluginDirs: [], config, adminSocket: false, keepCapabilities: true })
        return { runtime, shutdown: async () => { await runtime.close(); await sink.shutdown() } }
      } catch (error) {
        await sink.shutdown()
        throw error
      }
    })()
    this.#started.catch(() => { this.#started = undefined })
    return this.#started
  }

  async close(): Promise<void> {
    const started = this.#started
    this.#started = undefined
    if (started !== undefined) await (await started).shutdown()
  }
}
