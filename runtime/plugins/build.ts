/**
 * Turns a plugin's `.ts` file into one script for its isolate: the plugin, the helpers it imports
 * and the generated decoders, bundled by esbuild with a source map so failures point at the `.ts`
 * line. Each plugin keeps one esbuild `context()`, so an edit is an incremental rebuild.
 *
 * esbuild's JS API sends every build to one long-lived child process, its Go binary, started by
 * the first call, with the runtime's credentials at that moment: root, for the builds before the
 * privilege drop. Asked for `write: true` and an `outfile`, it writes wherever its uid may, so a
 * root service would outlive the drop as a way back to root. `stopBuildService` ends it at the
 * drop, and the next build starts a new one from the dropped runtime: as nobody, with
 * no_new_privs and only `serviceCapabilities`. Each builder then creates its context again in the
 * new service.
 */
import type { ChildProcess } from 'node:child_process'
import diagnostics from 'node:diagnostics_channel'
import * as esbuild from 'esbuild'
import { SourceMap, type SourceMapPayload } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { type CapabilityName, startChildKeeping } from '../privileges.ts'

const here = path.dirname(fileURLToPath(import.meta.url))
/** Where `periscope/plugin` points inside a bundle. */
export const pluginApiPath = path.join(here, 'api.ts')
/** The protocol parsers and helpers (pure TypeScript) plugins import as `periscope/protocols/<name>`. */
export const protocolsDir = path.resolve(here, '../protocols')
/** The generated table of decoders, keyed by topic (`'exec:events'`). */
export const defaultDecodersPath = path.resolve(here, '../../bpf/lib/index.types.ts')

export interface PluginBundle {
  /** The plugin's source file. */
  file: string
  code: string
  /** The name the script runs under; stack frames carry it until `mapStack` rewrites them. */
  scriptName: string
  readonly sourceMap: SourceMap
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

/**
 * What the service keeps after the drop: reading plugin files in directories only root may read
 * (/root is 0700), as the runtime does. It loads nothing into the kernel and writes nothing.
 */
const serviceCapabilities: readonly CapabilityName[] = ['CAP_DAC_READ_SEARCH']

/** One run of the service, from its start by a call until `stopBuildService`. */
interface ServiceRun {
  /** Set by the call that started it. */
  process: ChildProcess | undefined
  /** Resolved by the stop: esbuild leaves the calls still waiting for a stopped service unsettled. */
  stopped: PromiseWithResolvers<typeof stoppedMarker>
}
const stoppedMarker = Symbol('esbuild service stopped')
let run: ServiceRun = { process: undefined, stopped: Promise.withResolvers() }

/** Calls esbuild; the call that starts the service starts it keeping `serviceCapabilities`. */
function callService<T>(call: () => T): T {
  // esbuild spawns synchronously inside the call and keeps the process to itself; Node announces
  // every ChildProcess on this channel, and no other starts during the call
  const current = run
  const started = (message: unknown) => { current.process = (message as { process: ChildProcess }).process }
  diagnostics.subscribe('child_process', started)
  try {
    return startChildKeeping(serviceCapabilities, call)
  } finally {
    diagnostics.unsubscribe('child_process', started)
  }
}

/** Runs `build` against the service, again in the next one when the service is stopped under it. */
async function inService<T>(build: () => Promise<T>): Promise<T> {
  const current = run
  try {
    const result = await Promise.race([build(), current.stopped.promise])
    if (result !== stoppedMarker) return result
  } catch (error) {
    if (current === run) throw error
  }
  return inService(build)
}

/**
 * Ends the esbuild service and resolves once it has exited. The SIGKILL is sent at once, so call
 * this in the same tick as the drop: the old service runs no further instruction, and no build can
 * start another service between the two. Builds waiting for the old service, and every builder's
 * next build, go to a new service, which the first of them starts.
 */
export function stopBuildService(): Promise<void> {
  const old = run
  run = { process: undefined, stopped: Promise.withResolvers() }
  old.process?.kill('SIGKILL')
  // closes the pipes and forgets the service synchronously; the promise it returns says nothing more
  void esbuild.stop()
  old.stopped.resolve(stoppedMarker)
  const child = old.process
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => child.once('exit', () => resolve()))
}

type Context = esbuild.BuildContext<{ write: false; metafile: true }>

/** One plugin's incremental build. */
export class PluginBuilder {
  private readonly options: esbuild.BuildOptions & { write: false; metafile: true }
  /** The context and the service run it lives in; a stopped service took its contexts with it. */
  private context: { run: ServiceRun; context: Promise<Context> } | undefined
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
    this.options = {
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
      alias: { 'periscope/plugin': pluginApiPath, 'periscope/protocols': protocolsDir },
      logLevel: 'silent',
    }
  }

  private currentContext(): Promise<Context> {
    if (this.context?.run !== run) this.context = { run, context: callService(() => esbuild.context(this.options)) }
    return this.context.context
  }

  async build(): Promise<PluginBundle> {
    let result: esbuild.BuildResult<{ write: false; metafile: true }>
    try {
      result = await inService(async () => (await this.currentContext()).rebuild())
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
    // parsed when a stack is first mapped (a failure): parsed, a bundle's map holds about 0.4 MB
    // for as long as its plugin runs; its text is a tenth of that
    let sourceMap: SourceMap | undefined
    return {
      file: this.file, code: js.text, scriptName: this.scriptName, inputs,
      get sourceMap() { return sourceMap ??= new SourceMap(payload) },
    }
  }

  async dispose(): Promise<void> {
    const current = this.context
    this.context = undefined
    if (current?.run === run) await (await current.context).dispose()
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
  bootstrap ??= buildBootstrap()
  return bootstrap
}

async function buildBootstrap(): Promise<string> {
  const result = await inService(() => callService(() => esbuild.build({
    entryPoints: [path.join(here, 'isolate', 'bootstrap.ts')],
    bundle: true,
    write: false,
    format: 'iife',
    globalName: 'bootstrap',
    platform: 'neutral',
    target: 'es2024',
    logLevel: 'silent',
  })))
  return result.outputFiles[0]!.text
}
