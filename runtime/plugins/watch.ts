/**
 * Watches plugin directories with chokidar. A `.ts` file directly in a watched directory is a
 * plugin (not `*.d.ts` or `*.test.ts`); files in subdirectories are helpers, and changing one
 * rebuilds the plugins that import it.
 */
import { watch, type FSWatcher } from 'chokidar'
import path from 'node:path'
import type { Logger } from './log.ts'
import type { PluginManager } from './manager.ts'

export function isPluginFile(file: string, dirs: readonly string[]): boolean {
  const name = path.basename(file)
  if (!name.endsWith('.ts') || name.endsWith('.d.ts') || name.endsWith('.test.ts')) return false
  return dirs.some((dir) => path.dirname(path.resolve(file)) === path.resolve(dir))
}

const ignored = /(^|[/\\])(\.git|node_modules)([/\\]|$)/

export interface PluginWatcher {
  /** Directories being watched (absolute). */
  readonly dirs: readonly string[]
  close(): Promise<void>
}

/**
 * Loads every plugin found in `dirs`, then follows changes. Resolves once the initial plugins have
 * loaded or failed (failures are logged, not thrown).
 */
export async function watchPlugins(dirs: readonly string[], manager: PluginManager, log: Logger): Promise<PluginWatcher> {
  const absolute = dirs.map((d) => path.resolve(d))
  // chokidar watching nothing never says it is ready (the REPL's runtime starts with no directory)
  if (absolute.length === 0) return { dirs: absolute, close: async () => {} }
  const watcher: FSWatcher = watch(absolute, {
    ignored: (file) => ignored.test(file),
    ignoreInitial: false,
    // Editors save through a temporary file; waiting this long for the size to settle avoids
    // building a half-written file and costs little against the reload budget.
    awaitWriteFinish: { stabilityThreshold: 25, pollInterval: 10 },
  })
  const initial: Promise<unknown>[] = []
  let ready = false
  const report = (what: string, file: string) => (error: Error) => log.error(`${what} ${file}: ${error.message}`)

  watcher.on('add', (file) => {
    const work = (isPluginFile(file, absolute) ? manager.add(file) : manager.change(file)).catch(report('load', file))
    if (!ready) initial.push(work)
  })
  watcher.on('change', (file) => {
    manager.change(file).catch(report('reload', file))
  })
  watcher.on('unlink', (file) => {
    ;(isPluginFile(file, absolute) ? manager.remove(file) : manager.change(file)).catch(report('unload', file))
  })
  watcher.on('error', (error) => log.error(`watching ${absolute.join(', ')}: ${(error as Error).message}`))

  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()))
  ready = true
  await Promise.all(initial)
  return { dirs: absolute, close: () => watcher.close() }
}
