/**
 * One shipped plugin in `periscope run`, exporting to a real Collector every 500 ms, started and
 * stopped together: the set-up of the end-to-end tests of one kernel-metric plugin.
 */
import { startCollector, type Collector } from './otelcol.ts'
import { startPeriscope, type Periscope } from './periscope.ts'

export interface PluginRun {
  collector: Collector
  periscope: Periscope
  /** Stops the run (its exporter flushed), then the Collector. */
  stop(): Promise<void>
}

/**
 * Starts the Collector, then `periscope run` with only `plugin` (and `settings`, its entry under
 * `plugins:`), and waits until its log says `started`, the line the plugin writes when set up.
 */
export async function startPluginRun(plugin: string, settings: Record<string, unknown>, started: RegExp): Promise<PluginRun> {
  const collector = await startCollector()
  let periscope: Periscope
  try {
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint,
      shipped: [plugin],
      ready: /running 1 of \d+ plugins/,
      config: { plugins: { [plugin]: settings }, exporter: { metrics: { intervalMs: 500 } } },
    })
  } catch (error) {
    await collector.stop()
    throw error
  }
  const run: PluginRun = {
    collector,
    periscope,
    async stop() {
      await periscope.stop()
      await collector.stop()
    },
  }
  try {
    await periscope.waitForOutput(started, `the ${plugin} plugin to start`)
  } catch (error) {
    await run.stop()
    throw error
  }
  return run
}
