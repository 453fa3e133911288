/**
 * Helpers the benchmarks share: medians, readiness polling, /proc memory figures, the span inputs
 * of the exporter benchmarks, and a child tool driven by lines on stdin (the loopgen producer).
 */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { createInterface } from 'node:readline'
import type { SpanInput } from '../runtime/telemetry/index.ts'

export const repoRoot = path.resolve(import.meta.dirname, '..')

export const median = (xs: readonly number[]): number => xs.toSorted((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** Megabytes of 10^6 bytes, the strictest reading of the targets' "MB". */
export const mb = (bytes: number): string => (bytes / 1e6).toFixed(1)

export const verdict = (met: boolean): string => (met ? 'met' : 'MISSED')

export async function waitFor(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const start = performance.now()
  while (!condition()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
}

export interface ProcMemory {
  /** VmRSS, bytes. */
  rss: number
  /** RssAnon: the process's own memory (heaps, JIT code, malloc), bytes. */
  anon: number
  /** RssFile: mapped files (the node binary, addons), bytes. */
  file: number
}

/** The resident memory of a process from /proc/<pid>/status; undefined once it has exited. */
export function procMemory(pid: number | 'self'): ProcMemory | undefined {
  let status: string
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }
  const kb = (field: string): number => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)
    if (match === null) throw new Error(`/proc/${pid}/status has no ${field} line (is it a kernel thread?)`)
    return Number(match[1]) * 1024
  }
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') }
}

/** Pins this process (all its threads) to one CPU; false when taskset is missing or refused. */
export function pinSelf(cpu: number): boolean {
  try {
    execFileSync('taskset', ['-a', '-cp', String(cpu), String(process.pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

const T0 = Date.now() * 1e6
const pids = [101, 102, 103, 104]

/** HTTP server spans shaped like the ones the HTTP plugin will emit. */
export function spanInputs(count: number, offset: number): SpanInput[] {
  return Array.from({ length: count }, (_, i) => {
    const n = offset + i
    return {
      name: 'GET /api/users/{id}',
      kind: 'server',
      startTimeNs: T0 + n * 1000,
      endTimeNs: T0 + n * 1000 + 250_000,
      traceId: (n.toString(16).padStart(8, '0') + 'a3ce929d0e0e47364bf92f35').slice(0, 32),
      parentSpanId: '00f067aa0ba902b7',
      attributes: {
        'http.request.method': 'GET',
        'url.path': `/api/users/${n % 1000}`,
        'http.route': '/api/users/{id}',
        'http.response.status_code': 200,
        'server.address': 'api.internal',
        'server.port': 8080,
      },
      process: { pid: pids[n % pids.length], executablePath: '/usr/sbin/nginx' },
    }
  })
}

/** Compiles a bench/*.c tool against Debian's libbpf when its binary is older than its sources. */
export function buildTool(name: string): string {
  const source = path.join(repoRoot, `bench/${name}.c`)
  const output = path.join(repoRoot, 'bench/build', name)
  const mtime = (file: string): number => (existsSync(file) ? statSync(file).mtimeMs : 0)
  if (mtime(output) < Math.max(mtime(source), mtime(path.join(repoRoot, 'bpf/lib/loopgen.h')))) {
    mkdirSync(path.dirname(output), { recursive: true })
    execFileSync('cc', ['-O2', '-Wall', source, '-lbpf', '-lelf', '-lz', '-o', output], { stdio: 'inherit' })
  }
  return output
}

/** The kernel's id of a BPF program fd of this process, from its fdinfo. */
export function programId(fd: number): number {
  const match = /^prog_id:\s*(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))
  if (match === null) throw new Error(`fd ${fd} is not a BPF program (no prog_id in /proc/self/fdinfo/${fd})`)
  return Number(match[1])
}

/**
 * bench/loopgen-producer.c as a child process: runs loopgen's `generate` by program id on its own
 * CPU, so the producer's work (the kernel writing records) never counts against the consumer.
 */
export class LoopgenProducer {
  readonly #child: ChildProcessWithoutNullStreams
  readonly #lines: AsyncIterator<string>
  readonly #exited: Promise<number | null>

  constructor(programId: number, cpu: number) {
    const tool = buildTool('loopgen-producer')
    this.#child = spawn(tool, [String(programId), String(cpu)], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stderr = ''
    this.#child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    this.#exited = new Promise((resolve) => this.#child.once('exit', (code) => {
      if (code !== 0 && stderr !== '') process.stderr.write(stderr)
      resolve(code)
    }))
    this.#lines = createInterface({ input: this.#child.stdout })[Symbol.asyncIterator]()
  }

  /** Runs `generate` once with `count` records; resolves when the kernel has written them all. */
  async produce(count: number): Promise<void> {
    this.#child.stdin.write(`${count} 0\n`)
    const line = await this.#lines.next()
    if (line.done === true) throw new Error(`loopgen-producer exited (code ${await this.#exited}) before answering`)
  }

  async close(): Promise<void> {
    this.#child.stdin.end()
    const code = await this.#exited
    if (code !== 0) throw new Error(`loopgen-producer exited with ${code}`)
  }
}
