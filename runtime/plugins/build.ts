/**
 * Turns a plugin's `.ts` file into one script for its isolate: the plugin, the helpers it imports
 * and the generated decoders, bundled by esbuild with a source map so failures point at the `.ts`
 * line. Each plugin keeps one esbuild `context()`, so an edit is an incremental rebuild.
 */
import * as esbuild from 'esbuild'
import { SourceMap, type SourceMapPayload } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
/** Where `periscope/plugin` points inside a bundle. */
export const pluginApiPath = path.join(here, 'api.ts')
/** The generated table of decoders, keyed by topic (`'exec:events'`). */
export const defaultDecodersPath = path.resolve(here, '../../bpf/lib/index.types.ts')

export interface PluginBundle {
  /** The plugin's source file. */
  file: string
  code: string
  /** The name the script runs under; stack frames carry it until `mapStack` rewrites them. */
  scriptName: string
  sourceMap: SourceMap
  /** Absolute paths of every source file in the bundle, for rebuilding when a helper changes. */
  inputs: string[]
}

/** A build failure, already formatted as `file:line:column: message` lines. */
export class PluginBuildError extends Error {
  readonly locations: string[]
  constructor(file: string, locations: string[]) {
    super(`build ${path.relative(process.cwd(), file) || file} failed:\n  ${locations.join('\n  ')}`)
    this.name = 'PluginBuildError'
    this.locations = locations
  }
}

function formatMessages(messages: esbuild.Message[]): string[] {
  return messages.map((m) => {
    if (m.location === null) return m.text
    return `${m.location.file}:${m.location.line}:${m.location.column + 1}: ${m.text}`
  })
}

/** One plugin's incremental build. */
export class PluginBuilder {
  private context: Promise<esbuild.BuildContext<{ write: false; metafile: true }>>
  readonly scriptName: string
  readonly file: string

  constructor(file: string, decodersPath = defaultDecodersPath) {
    this.file = file
    this.scriptName = `periscope-plugin/${path.basename(file, path.extname(file))}.js`
    const dir = path.dirname(file)
    // The entry is virtual: it imports the plugin and the decoders and hands both to the runtime
    // in the isolate (runtime/plugins/isolate/bootstrap.ts).
    const entry = [
      `import plugin from ${JSON.stringify(file)}`,
      `import { decoders } from ${JSON.stringify(decodersPath)}`,
      `globalThis.__periscope.install(plugin, decoders)`,
    ].join('\n')
    this.context = esbuild.context({
      stdin: { contents: entry, resolveDir: dir, sourcefile: '<periscope entry>', loader: 'ts' },
      bundle: true,
      write: false,
      metafile: true,
      format: 'iife',
      platform: 'neutral',
      target: 'es2024',
      // The output never touches the disk; the name only anchors the source map's relative paths.
      outfile: path.join(dir, this.scriptName),
      sourcemap: 'external',
      sourcesContent: false,
      alias: { 'periscope/plugin': pluginApiPath },
      logLevel: 'silent',
    })
  }

  async build(): Promise<PluginBundle> {
    const context = await this.context
    let result: esbuild.BuildResult<{ write: false; metafile: true }>
    try {
      result = await context.rebuild()
    } catch (error) {
      const failure = error as esbuild.BuildFailure
      if (Array.isArray(failure.errors)) throw new PluginBuildError(this.file, formatMessages(failure.errors))
      throw error
    }
    const js = result.outputFiles.find((f) => f.path.endsWith('.js'))
    const map = result.outputFiles.find((f) => f.path.endsWith('.js.map'))
    if (js === undefined || map === undefined) throw new Error(`esbuild produced no script for ${this.file}`)
    const payload = JSON.parse(map.text) as SourceMapPayload
    const mapDir = path.dirname(map.path)
    payload.sources = payload.sources.map((s) => path.resolve(mapDir, s))
    const inputs = Object.keys(result.metafile.inputs)
      .filter((input) => !input.startsWith('<'))
      .map((input) => path.resolve(input))
    return { file: this.file, code: js.text, scriptName: this.scriptName, sourceMap: new SourceMap(payload), inputs }
  }

  async dispose(): Promise<void> {
    await (await this.context).dispose()
  }
}

/**
 * Rewrites the isolate's stack frames (`periscope-plugin/x.js:12:7`) to the plugin's sources
 * (`plugins/x.ts:5:3`), relative to the working directory.
 */
export function mapStack(stack: string, bundle: Pick<PluginBundle, 'scriptName' | 'sourceMap'>): string {
  const escaped = bundle.scriptName.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
  return stack.replace(new RegExp(`${escaped}:(\\d+):(\\d+)`, 'g'), (whole, line: string, column: string) => {
    const entry = bundle.sourceMap.findEntry(Number(line) - 1, Number(column) - 1)
    if (!('originalSource' in entry) || entry.originalSource === undefined) return whole
    const source = path.relative(process.cwd(), entry.originalSource) || entry.originalSource
    return `${source}:${entry.originalLine + 1}:${entry.originalColumn + 1}`
  })
}

let bootstrap: Promise<string> | undefined

/** The in-isolate runtime as a script, built once per process. */
export function bootstrapScript(): Promise<string> {
  bootstrap ??= esbuild
    .build({
      entryPoints: [path.join(here, 'isolate', 'bootstrap.ts')],
      bundle: true,
      write: false,
      format: 'iife',
      globalName: 'bootstrap',
      platform: 'neutral',
      target: 'es2024',
      logLevel: 'silent',
    })
    .then((result) => result.outputFiles[0]!.text)
  return bootstrap
}
