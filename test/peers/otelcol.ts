/**
 * A real OpenTelemetry Collector for end-to-end tests: built once by ./otelcol/build.sh (cached
 * under ~/.cache/periscope-peers), started on free 127.0.0.1 ports with profiles enabled, writing
 * what it receives as OTLP JSON lines under `outDir` (traces.jsonl, metrics.jsonl, logs.jsonl,
 * profiles.jsonl).
 *
 *   const collector = await startCollector()
 *   t.after(() => collector.stop())
 *   ... export to collector.httpEndpoint ...
 *   const spans = await collector.waitFor('traces', (lines) => findSpans(lines).length >= 3)
 *
 * `stop()` then `start()` simulates an outage: the Collector comes back on the same ports and keeps
 * appending to the same files.
 */
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { createServer, connect } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { scratchDir } from './scratch-dir.ts'

const HERE = fileURLToPath(new URL('./otelcol/', import.meta.url))

export type CollectorSignal = 'traces' | 'metrics' | 'logs' | 'profiles'

let binary: Promise<string> | undefined

/** Builds the Collector if it is not cached yet (minutes on a cold cache) and returns its path. */
export function collectorBinary(): Promise<string> {
  binary ??= promisify(execFile)(join(HERE, 'build.sh'), [], { maxBuffer: 64 * 1024 * 1024, timeout: 30 * 60_000 }).then(
    ({ stdout }) => stdout.trim().split('\n').at(-1) as string,
    (error: Error & { stderr?: string }) => {
      throw new Error(`building the test Collector failed (test/peers/otelcol/build.sh): ${error.message}\n${error.stderr?.slice(-4000) ?? ''}`)
    },
  )
  return binary
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

export interface Collector {
  /** OTLP/HTTP base URL, e.g. http://127.0.0.1:43121 */
  readonly httpEndpoint: string
  /** OTLP/gRPC URL, e.g. http://127.0.0.1:43120 */
  readonly grpcEndpoint: string
  readonly outDir: string
  /** The Collector's stderr so far, for failure messages. */
  output(): string
  /** Every JSON line written so far for a signal, parsed. */
  read(signal: CollectorSignal): Promise<Record<string, unknown>[]>
  /** Polls the signal's file until `done(lines)` is true; rejects with the Collector's output on timeout. */
  waitFor(signal: CollectorSignal, done: (lines: Record<string, unknown>[]) => boolean, timeoutMs?: number): Promise<Record<string, unknown>[]>
  start(): Promise<void>
  stop(): Promise<void>
}

export async function startCollector(options: { outDir?: string } = {}): Promise<Collector> {
  const path = await collectorBinary()
  let outDir = options.outDir
  // removed when the test process exits: stop() keeps it, as a stopped Collector may start again
  outDir ??= scratchDir('periscope-otelcol-')
  const grpcPort = await freePort()
  const httpPort = await freePort()
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  let output = ''

  const start = async (): Promise<void> => {
    if (child !== undefined) return
    const proc = spawn(path, ['--config', join(HERE, 'collector.yaml'), '--feature-gates=service.profilesSupport'], {
      env: {
        PATH: process.env.PATH,
        OUT_DIR: outDir,
        OTLP_GRPC_ENDPOINT: `127.0.0.1:${grpcPort}`,
        OTLP_HTTP_ENDPOINT: `127.0.0.1:${httpPort}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child = proc
    proc.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    proc.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    exited = new Promise((resolve) => proc.once('exit', () => resolve()))
    void exited.then(() => {
      if (child === proc) child = undefined
    })
    const deadline = Date.now() + 20_000
    while (!(await portOpen(httpPort)) || !(await portOpen(grpcPort))) {
      if (child !== proc) throw new Error(`the test Collector exited during start-up:\n${output.slice(-4000)}`)
      if (Date.now() > deadline) throw new Error(`the test Collector did not open ports ${grpcPort}/${httpPort} within 20s:\n${output.slice(-4000)}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  const stop = async (): Promise<void> => {
    const proc = child
    if (proc === undefined) return
    proc.kill('SIGTERM')
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
    child = undefined
  }

  const read = async (signal: CollectorSignal): Promise<Record<string, unknown>[]> => {
    let text: string
    try {
      text = await readFile(join(outDir, `${signal}.jsonl`), 'utf8')
    } catch {
      return []
    }
    // the file exporter may be mid-line while we read; only complete lines count
    const lines = text.split('\n')
    lines.pop()
    return lines.filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as Record<string, unknown>)
  }

  await start()
  return {
    httpEndpoint: `http://127.0.0.1:${httpPort}`,
    grpcEndpoint: `http://127.0.0.1:${grpcPort}`,
    outDir,
    output: () => output,
    read,
    async waitFor(signal, done, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const lines = await read(signal)
        if (done(lines)) return lines
        if (Date.now() > deadline) {
          throw new Error(`timed out after ${timeoutMs}ms waiting for ${signal} in ${outDir} (${lines.length} line(s) so far). Collector output:\n${output.slice(-3000)}`)
        }
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    },
    start,
    stop,
  }
}

type Json = Record<string, unknown>

/** OTLP JSON attribute list → plain object (intValue strings become numbers). */
export function attributesOf(list: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const kv of (list as { key: string; value: Json }[] | undefined) ?? []) out[kv.key] = anyValueOf(kv.value)
  return out
}

function anyValueOf(value: Json | undefined): unknown {
  if (value === undefined) return undefined
  if ('stringValue' in value) return value.stringValue
  if ('intValue' in value) return Number(value.intValue)
  if ('doubleValue' in value) return Number(value.doubleValue)
  if ('boolValue' in value) return value.boolValue
  if ('arrayValue' in value) return ((value.arrayValue as { values?: Json[] }).values ?? []).map(anyValueOf)
  if ('kvlistValue' in value) return attributesOf((value.kvlistValue as { values?: unknown }).values)
  return undefined
}

export interface FlatItem {
  resource: Record<string, unknown>
  scope: { name?: string; version?: string }
  item: Json
}

const LAYOUT: Record<CollectorSignal, [string, string, string]> = {
  traces: ['resourceSpans', 'scopeSpans', 'spans'],
  metrics: ['resourceMetrics', 'scopeMetrics', 'metrics'],
  logs: ['resourceLogs', 'scopeLogs', 'logRecords'],
  profiles: ['resourceProfiles', 'scopeProfiles', 'profiles'],
}

/** Flattens OTLP JSON lines into items with their resource attributes and scope. */
export function flatten(signal: CollectorSignal, lines: readonly Json[]): FlatItem[] {
  const [resourceKey, scopeKey, itemKey] = LAYOUT[signal]
  const out: FlatItem[] = []
  for (const line of lines) {
    for (const rs of (line[resourceKey] as Json[] | undefined) ?? []) {
      const resource = attributesOf((rs.resource as Json | undefined)?.attributes)
      for (const ss of (rs[scopeKey] as Json[] | undefined) ?? []) {
        const scope = (ss.scope as FlatItem['scope'] | undefined) ?? {}
        for (const item of (ss[itemKey] as Json[] | undefined) ?? []) out.push({ resource, scope, item })
      }
    }
  }
  return out
}

/**
 * The sum of the latest cumulative points of counter `name` (of `scope` when given) over every
 * series whose attributes include `match`: what a counter says now, across its series.
 */
export function counterTotal(lines: readonly Json[], name: string, match: Record<string, unknown>, scope?: string): number {
  const latest = new Map<string, number>()
  for (const { item, scope: itemScope } of flatten('metrics', lines)) {
    if (item.name !== name || (scope !== undefined && itemScope.name !== scope)) continue
    for (const point of (item.sum as Json).dataPoints as Json[]) {
      const attributes = attributesOf(point.attributes)
      if (Object.entries(match).every(([key, value]) => attributes[key] === value)) latest.set(JSON.stringify(attributes), Number(point.asInt ?? point.asDouble))
    }
  }
  return [...latest.values()].reduce((a, b) => a + b, 0)
}

/** A span as the Collector's file exporter wrote it, flattened for assertions. */
export interface CollectorSpan {
  name: string
  kind: 'server' | 'client' | 'producer' | 'consumer' | 'other'
  traceId: string
  spanId: string
  /** '' for a root span. */
  parentSpanId: string
  attributes: Record<string, unknown>
  resource: Record<string, unknown>
  error: boolean
  statusMessage: string
  startNs: bigint
  endNs: bigint
}

const SPAN_KINDS: Record<number, CollectorSpan['kind']> = { 2: 'server', 3: 'client', 4: 'producer', 5: 'consumer' }

/** Every span in the Collector's trace lines. */
export function collectorSpans(lines: readonly Json[]): CollectorSpan[] {
  return flatten('traces', lines).map(({ item, resource }) => ({
    name: item.name as string,
    kind: SPAN_KINDS[item.kind as number] ?? 'other',
    traceId: item.traceId as string,
    spanId: item.spanId as string,
    parentSpanId: (item.parentSpanId as string | undefined) ?? '',
    attributes: attributesOf(item.attributes),
    resource,
    error: (item.status as { code?: number } | undefined)?.code === 2,
    statusMessage: (item.status as { message?: string } | undefined)?.message ?? '',
    startNs: BigInt(item.startTimeUnixNano as string),
    endNs: BigInt(item.endTimeUnixNano as string),
  }))
}
