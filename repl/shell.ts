/**
 * `periscope repl [--socket PATH] [--config periscope.yaml]`: node:repl with the exploration API
 * in scope (help.ts lists it), top-level await, history in a file, and Tab completion of
 * tracepoint names and fields from tracefs besides JavaScript's own.
 *
 * What a line evaluates to decides what happens:
 * - a line that starts with a probe (`tracepoint:...`, `BEGIN`, `interval:...`) is a bpftrace
 *   program: it runs through `runOneLiner` until `exit()` or Ctrl-C, then prints its maps;
 * - a `Runnable` (a `trace()` stream or aggregate, `map(...).watch()`) runs until it ends or
 *   Ctrl-C, which detaches its probes and gives the prompt back;
 * - a promise (`plugins()`, `map(...).dump()`) is awaited, Ctrl-C giving up the wait;
 * - anything else prints as node's REPL prints it.
 * Errors in a one-liner or a probe spec print with their column marker; the REPL goes on.
 */
import { existsSync, readdirSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import repl, { type REPLServer } from 'node:repl'
import { inspect, parseArgs } from 'node:util'
import { loadConfig, type PeriscopeConfig } from '../runtime/config/index.ts'
import { consoleLogger } from '../runtime/plugins/log.ts'
import { BpftraceError, BpftraceErrors } from './bpftrace/errors.ts'
import { runOneLiner } from './bpftrace/run.ts'
import { readFormat, TRACEFS } from './bpftrace/tracefs.ts'
import { probes, trace } from './explore.ts'
import { helpText } from './help.ts'
import { openSession, type RuntimeSession } from './session.ts'
import { endIterations, type Runnable } from './stream.ts'
import { fromStream, type FromStreamOptions } from './from-stream.ts'

export interface ShellOptions {
  input: NodeJS.ReadableStream
  output: NodeJS.WritableStream
  session: RuntimeSession
  /** Where history is kept between runs; none when undefined. */
  historyFile?: string
  tracefsRoot?: string
}

type Output = { write(text: string): void }

/** The bpftrace providers a program line may start with (those the parser refuses included, so they get its located error). */
const PROBE_LINE = /^\s*(?:(?:tracepoint|t|uprobe|u|uretprobe|ur|profile|p|interval|i|kprobe|k|kretprobe|kr|kfunc|f|kretfunc|fr|usdt|U|software|s|hardware|h):\S|(?:BEGIN|END)(?=$|[\s{,/]))/

export const isProbeProgram = (code: string): boolean => PROBE_LINE.test(code)

const isRunnable = (value: unknown): value is Runnable =>
  typeof value === 'object' && value !== null && typeof (value as Runnable).run === 'function' && typeof (value as PromiseLike<unknown>).then !== 'function'

const isPromise = (value: unknown): value is PromiseLike<unknown> =>
  typeof value === 'object' && value !== null && typeof (value as PromiseLike<unknown>).then === 'function'

/** `{` left open: the program goes on on the next line, as bpftrace reads a script. */
function unclosedBraces(source: string): boolean {
  let depth = 0
  let quoted = false
  for (let i = 0; i < source.length; i++) {
    const char = source[i]
    if (quoted) {
      if (char === '\\') i++
      else if (char === '"') quoted = false
    } else if (char === '"') quoted = true
    else if (char === '{') depth++
    else if (char === '}') depth--
  }
  return depth > 0
}

export function parseInterval(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(text)
  if (match === null) throw new Error(`interval '${text}' is not a number with a unit; write it like '1s', '500ms' or '1m'`)
  return Number(match[1]) * { ms: 1, s: 1000, m: 60_000 }[match[2] as 'ms' | 's' | 'm']
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); signal.removeEventListener('abort', done); resolve() }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}

const clock = (): string => new Date().toTimeString().slice(0, 8)

/** Map entries one a line, `key: value`, as `print(@map)` prints a bpftrace map. */
function entriesText(rows: { key: unknown; value: unknown }[]): string {
  const one = (value: unknown) => inspect(value, { breakLength: Infinity, depth: 4 })
  return rows.map((row) => `${one(row.key)}: ${one(row.value)}\n`).join('')
}

/** The runtime half of the API: what is loaded, maps, and plugins, from `session`. */
function runtimeApi(session: RuntimeSession) {
  const plugins = () => session.call<{ name?: string; file: string; status: string; stats: object; lastError?: unknown }[]>('plugins')
  return {
    objects: () => session.call('objects'),
    maps: () => session.call('maps'),
    links: () => session.call('links'),
    plugins,
    map(topic: string) {
      const dump = () => session.call<{ key: unknown; value: unknown }[]>('dump', { topic })
      return {
        dump,
        watch(interval: string): Runnable {
          const ms = parseInterval(interval)
          return {
            async run(out, signal) {
              while (!signal.aborted) {
                out.write(`${clock()} ${topic}\n${entriesText(await dump())}\n`)
                await pause(ms, signal)
              }
            },
          }
        },
      }
    },
    plugin: {
      load(file: string) {
        const absolute = path.resolve(file)
        if (!existsSync(absolute)) return Promise.reject(new Error(`plugin file ${absolute} does not exist`))
        return session.call('load', { file: absolute })
      },
      reload: (name: string) => session.call('reload', { name }),
      fromStream: (stream: unknown, emit: unknown, options?: FromStreamOptions) => fromStream(session, stream, emit, options),
      async stats(name: string) {
        const all = await plugins()
        const found = all.find((p) => p.name === name)
        if (found === undefined) throw new Error(`no plugin named '${name}'; plugins: ${all.map((p) => p.name ?? p.file).join(', ') || 'none'}`)
        return { name, status: found.status, ...found.stats, lastError: found.lastError }
      },
    },
  }
}

/** Errors the REPL prints itself: a probe program's (or spec's) with its column marker, and those that are the user's to fix. */
function errorText(error: unknown, source: string): string {
  if (error instanceof BpftraceErrors) {
    // a spec given to trace() or probes(): its errors are located in the spec, shown in the line
    const spec = (error as BpftraceErrors & { source?: string }).source
    const at = spec === undefined ? -1 : source.indexOf(spec)
    if (spec === undefined || at < 0) return error.format(spec ?? source)
    const shifted = error.errors.map((e) => new BpftraceError(e.message, e.loc && e.loc.line === 1 ? { ...e.loc, column: e.loc.column + at, endColumn: e.loc.endColumn + at } : e.loc))
    return new BpftraceErrors(shifted).format(source, 'repl')
  }
  if (error instanceof BpftraceError) return `ERROR: ${error.message}\n`
  return `${(error as Error).message ?? String(error)}\n`
}

/** Tab completion of tracepoint names (`sched:sched_sw`, `tracepoint:sch`, `'sch` in a string) and of `args.` fields. */
class KernelNames {
  readonly #root: string
  #categories: string[] | undefined
  readonly #names = new Map<string, string[]>()

  constructor(root: string) {
    this.#root = root
  }

  #directories(dir: string): string[] {
    try {
      return readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort()
    } catch {
      return []
    }
  }

  categories(): string[] {
    this.#categories ??= this.#directories(`${this.#root}/events`)
    return this.#categories
  }

  names(category: string): string[] {
    let names = this.#names.get(category)
    if (names === undefined) {
      names = this.categories().includes(category) ? this.#directories(`${this.#root}/events/${category}`) : []
      this.#names.set(category, names)
    }
    return names
  }

  /** [completions, the text they replace], or undefined to leave the line to JavaScript's completion. */
  complete(line: string): [string[], string] | undefined {
    const field = /\bargs(?:\.|->)([A-Za-z0-9_]*)$/.exec(line)
    if (field !== null) {
      const spec = [...line.matchAll(/\b(?:tracepoint|t):([a-z0-9_]+):([a-z0-9_]+)/g)].at(-1)
      const fields = spec === undefined ? [] : readFormat(spec[1], spec[2], this.#root)?.fields.map((f) => f.name) ?? []
      return fields.length === 0 ? undefined : [fields.filter((f) => f.startsWith(field[1])), field[1]]
    }
    const token = /(^|[\s'"`(,])([A-Za-z0-9_:]*)$/.exec(line)
    if (token === null) return undefined
    const quoted = ['\'', '"', '`'].includes(token[1])
    const parts = token[2].split(':')
    let prefix = ''
    let rest = parts
    if ((parts[0] === 'tracepoint' || parts[0] === 't') && parts.length > 1) {
      prefix = `${parts[0]}:`
      rest = parts.slice(1)
    } else if (!(parts.length === 2 && this.categories().includes(parts[0])) && !(quoted && parts.length === 1)) {
      return undefined
    }
    if (rest.length === 1) return [this.categories().filter((c) => c.startsWith(rest[0])).map((c) => `${prefix}${c}:`), token[2]]
    if (rest.length === 2) return [this.names(rest[0]).filter((n) => n.startsWith(rest[1])).map((n) => `${prefix}${rest[0]}:${n}`), token[2]]
    return undefined
  }
}

/**
 * After a line ran under breakEvalOnSigint, node (24) leaves SIGINT at its default action though
 * listeners remain, so the next Ctrl-C from a pipe would kill the REPL: the last listener going and
 * coming back installs the handler again.
 */
function rearmSigint(): void {
  process.off('SIGINT', endIterations)
  process.on('SIGINT', endIterations)
}

/** Starts the REPL on `input`/`output`; resolves once history is set up. */
export async function startShell(options: ShellOptions): Promise<REPLServer> {
  const root = options.tracefsRoot ?? TRACEFS
  let lastSource = ''
  // node's REPL prints what a line threw through the writer: probe errors get their marker there
  const writer = (value: unknown): string => {
    if (value instanceof BpftraceErrors || value instanceof BpftraceError) return `${value.name}: ${errorText(value, lastSource).trimEnd()}`
    if ((value as { code?: unknown } | null)?.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED') return 'Interrupted: Ctrl-C stopped the line, and the streams it was reading'
    return inspect(value, repl.writer.options)
  }
  const server = repl.start({ prompt: 'periscope> ', input: options.input, output: options.output, ignoreUndefined: true, useGlobal: false, preview: false, breakEvalOnSigint: true, writer })
  const out: Output = { write: (text) => { options.output.write(text) } }
  let closed = false
  server.once('close', () => { closed = true })
  Object.assign(server.context, { trace, probes, ...runtimeApi(options.session) })

  /** Runs `work` with Ctrl-C aborting it instead of reaching the REPL's own handler. */
  const interruptible = async <T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> => {
    const controller = new AbortController()
    const replHandlers = server.listeners('SIGINT') as (() => void)[]
    server.removeAllListeners('SIGINT')
    const interrupt = () => controller.abort()
    server.on('SIGINT', interrupt)
    // input that is no terminal (a pipe): Ctrl-C is a real signal to this process
    process.on('SIGINT', interrupt)
    try {
      return await work(controller.signal)
    } finally {
      process.off('SIGINT', interrupt)
      server.off('SIGINT', interrupt)
      for (const handler of replHandlers) server.on('SIGINT', handler)
    }
  }

  const runProgram = (source: string) => interruptible((signal) => runOneLiner(source, { write: out.write, signal, tracefsRoot: root }))

  /** What a JavaScript line gave, run or awaited, for the REPL to print. */
  const settle = async (value: Runnable | PromiseLike<unknown>): Promise<unknown> => {
    if (isRunnable(value)) {
      await interruptible((signal) => value.run(out, signal))
      return undefined
    }
    return interruptible((signal) => new Promise((resolve, reject) => {
      signal.addEventListener('abort', () => reject(new Error('interrupted: the REPL stopped waiting (what it waited for may still finish)')), { once: true })
      Promise.resolve(value).then(resolve, reject)
    }))
  }

  /** The line still running (a program, a Runnable, a promise): lines pasted or piped after it wait for it. */
  let running: Promise<void> | undefined
  const occupy = (work: Promise<void>) => {
    const current: Promise<void> = work.finally(() => {
      if (running === current) running = undefined
    })
    running = current
  }

  const jsEval = server.eval
  const evaluate: repl.REPLEval = function (code, context, file, reply) {
    if (running !== undefined) {
      void running.then(() => evaluate.call(server, code, context, file, reply))
      return
    }
    const callback: typeof reply = (error, value) => {
      // a held line that wants more once the input has ended: no more will come, nor a prompt
      if (closed && error instanceof repl.Recoverable) return out.write('the input ended inside an unfinished line\n')
      reply(error, value)
    }
    const source = code.trimEnd()
    lastSource = source
    const fail = (error: unknown) => {
      out.write(errorText(error, source))
      callback(null, undefined)
    }
    if (isProbeProgram(source)) {
      if (unclosedBraces(source)) return callback(new repl.Recoverable(new Error('the program goes on: { is not closed')), undefined)
      occupy(runProgram(source).then(() => callback(null, undefined), fail))
      return
    }
    // a line with top-level await answers once what it awaits settles: the next one waits too
    occupy(new Promise<void>((resolve) => {
      // node's eval hands a thrown error (an awaited rejection too) to the REPL's domain, which
      // prints it, and then never answers
      const domain = (server as unknown as { _domain?: NodeJS.EventEmitter })._domain
      const done = () => {
        domain?.off('error', done)
        resolve()
      }
      domain?.once('error', done)
      jsEval.call(server, code, context, file, (error, value) => {
        rearmSigint()
        if (error) {
          callback(error, undefined)
          return done()
        }
        if (!isRunnable(value) && !isPromise(value)) {
          callback(null, value)
          return done()
        }
        settle(value).then((shown) => callback(null, shown), fail).finally(done)
      })
    }))
  }
  ;(server as { eval: repl.REPLEval }).eval = evaluate
  // Ctrl-C reaches the REPL as its 'SIGINT' event on a terminal, as the signal from a pipe
  server.on('SIGINT', endIterations)
  process.on('SIGINT', endIterations)
  server.once('exit', () => process.off('SIGINT', endIterations))

  const names = new KernelNames(root)
  const jsComplete = server.completer as (line: string, callback: (error: Error | null, result?: [string[], string]) => void) => void
  ;(server as unknown as { completer: typeof jsComplete }).completer = (line, callback) => {
    const kernel = names.complete(line)
    if (kernel !== undefined) return callback(null, kernel)
    jsComplete.call(server, line, callback)
  }

  server.defineCommand('help', {
    help: 'The exploration API, one-liners and keys, with examples',
    action() {
      out.write(helpText)
      this.displayPrompt()
    },
  })

  if (options.historyFile !== undefined) {
    const file = options.historyFile
    await new Promise<void>((resolve, reject) => server.setupHistory(file, (error) => (error ? reject(new Error(`REPL history ${file}: ${error.message}; set PERISCOPE_REPL_HISTORY to a file you can write`)) : resolve())))
  }
  return server
}

const usage = 'usage: periscope repl [--socket PATH] [--config periscope.yaml]'

export async function main(argv: string[]): Promise<number> {
  let args: { socket?: string; config?: string; help?: boolean }
  try {
    args = parseArgs({ args: argv, options: { socket: { type: 'string' }, config: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }).values
  } catch (error) {
    console.error(`periscope repl: ${(error as Error).message}\n${usage}`)
    return 2
  }
  if (args.help === true) {
    console.log(usage)
    return 0
  }
  let config: PeriscopeConfig | undefined
  try {
    if (args.config !== undefined) config = await loadConfig(args.config)
  } catch (error) {
    console.error(`periscope repl: ${(error as Error).message}`)
    return 2
  }
  // the runtime's info lines would land in the middle of what the user types
  const log = consoleLogger(process.env.PERISCOPE_LOG === 'debug' ? 'debug' : 'warn')
  const session = await openSession({ socket: args.socket, config, log })
  process.stdout.write(`Periscope REPL: ${session.where}.\nType .help for examples; Ctrl-D leaves.\n`)
  const historyFile = process.env.PERISCOPE_REPL_HISTORY ?? path.join(os.homedir(), '.periscope_history')
  let server: REPLServer
  try {
    server = await startShell({ input: process.stdin, output: process.stdout, session, historyFile })
  } catch (error) {
    console.error(`periscope repl: ${(error as Error).message}`)
    await session.close()
    return 1
  }
  await new Promise<void>((resolve) => server.once('exit', resolve))
  try {
    await session.close()
  } catch (error) {
    console.error(`periscope repl: stopping the in-process runtime: ${(error as Error).message}`)
    return 1
  }
  return 0
}
