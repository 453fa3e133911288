/**
 * `periscope run` as a child process, the way a user starts it: the shipped plugins, a config
 * file written from `config`, export to `endpoint` (a test Collector) when given. Readiness is
 * the runtime's own "running N of M plugins" line.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'

const root = fileURLToPath(new URL('../../', import.meta.url))
const node = join(root, 'node_modules/.bin/node')

export interface PeriscopeOptions {
  /** periscope.yaml, as an object (written as JSON, which is YAML). */
  config?: Record<string, unknown>
  /** OTLP/HTTP endpoint to export to; without it the embedded default writes into `dir/data`. */
  endpoint?: string
  /**
   * The shipped plugins (plugins/*.ts, by name) this run keeps; the others are disabled, so a test
   * sees only the traffic it is about. Default: all of them, as a user gets.
   */
  shipped?: string[]
  /** Extra `--plugins` directories. */
  pluginDirs?: string[]
  /** The start-up line to wait for; default any "running N of M plugins". */
  ready?: RegExp
  readyTimeoutMs?: number
}

export interface Periscope {
  readonly pid: number
  /** The run's working directory (config, admin socket, embedded data). */
  readonly dir: string
  output(): string
  /** Polls the output for `pattern`; fails with the whole output when the run exits or the time is up. */
  waitForOutput(pattern: RegExp, what: string, timeoutMs?: number): Promise<RegExpExecArray>
  /** SIGTERM (the runtime flushes its exporter), SIGKILL after 20 s; removes the directory. */
  stop(): Promise<number | null>
}

export async function startPeriscope(options: PeriscopeOptions = {}): Promise<Periscope> {
  const dir = await mkdtemp(join(tmpdir(), 'periscope-run-'))
  const config = {
    admin: { socket: join(dir, 'admin.sock') },
    ...options.config,
    plugins: { ...(options.shipped === undefined ? {} : withoutShippedPlugins(options.shipped)), ...(options.config?.plugins as object | undefined) },
    exporter: { dataDir: join(dir, 'data'), prometheus: { enabled: false }, ...(options.config?.exporter as object | undefined) },
  }
  await writeFile(join(dir, 'periscope.yaml'), JSON.stringify(config, null, 2))
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('OTEL_')) env[key] = value
  if (options.endpoint !== undefined) env.OTEL_EXPORTER_OTLP_ENDPOINT = options.endpoint
  const args = [join(root, 'runtime/cli.ts'), 'run', '--config', join(dir, 'periscope.yaml')]
  for (const plugins of options.pluginDirs ?? []) args.push('--plugins', plugins)
  const child: ChildProcess = spawn(node, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const waitForOutput = async (pattern: RegExp, what: string, timeoutMs = 30_000): Promise<RegExpExecArray> => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const match = pattern.exec(output)
      if (match !== null) return match
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`periscope run exited (${child.exitCode ?? child.signalCode}) while waiting for ${what}:\n${output}`)
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; periscope run output:\n${output}`)
      await sleep(20)
    }
  }
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
      await exited
      clearTimeout(timer)
    }
    await rm(dir, { recursive: true, force: true })
    return child.exitCode
  }
  try {
    await waitForOutput(options.ready ?? /running \d+ of \d+ plugins/, 'the runtime to start', options.readyTimeoutMs ?? 60_000)
  } catch (error) {
    await stop()
    throw error
  }
  return { pid: child.pid!, dir, output: () => output, waitForOutput, stop }
}

/** The names of the plugins Periscope ships (each file's name is its plugin's name). */
export function shippedPluginNames(): string[] {
  return readdirSync(join(root, 'plugins')).filter((file) => file.endsWith('.ts')).map((file) => file.slice(0, -3)).sort()
}

/** A periscope.yaml `plugins` block that disables every shipped plugin except `keep`. */
export function withoutShippedPlugins(keep: string[] = []): Record<string, { enabled: false }> {
  const unknown = keep.filter((name) => !shippedPluginNames().includes(name))
  if (unknown.length > 0) throw new Error(`no shipped plugin named ${unknown.join(', ')} in plugins/ (there are: ${shippedPluginNames().join(', ')})`)
  return Object.fromEntries(shippedPluginNames().filter((name) => !keep.includes(name)).map((name) => [name, { enabled: false as const }]))
}
