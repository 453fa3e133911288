// `periscope run` end to end: real exec events from the kernel, a plugin that turns them into all
// four signals, the real exporter, a real Collector (test/peers/otelcol). What the plugin emits must
// arrive exactly, with the traced process's resource; the runtime's self-metrics must arrive too;
// SIGTERM must flush everything; a Collector outage must cost no more than the configured queue,
// every drop counted in the exported self-metrics, and export must resume.
import { test } from 'node:test'
import type { TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { attributesOf, flatten, startCollector } from '../peers/otelcol.ts'
import type { Collector, FlatItem } from '../peers/otelcol.ts'
import { withoutShippedPlugins } from '../peers/periscope.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))
const node = join(root, 'node_modules/.bin/node')
const MARKER_BINARY = '/bin/echo'

type Json = Record<string, unknown>

/**
 * For every exec whose first argument starts with `config.marker`: one span, one counter point, one
 * log record and one CPU profile sample, all with the exec's pid, path and argv, then a `ctx.log`
 * line the test waits for, with the number of exec events the handler has seen so far. `config.signals: 'spans'` emits only the span (the outage test).
 */
const PLUGIN = `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'e2e-exec',
  objects: ['exec'],
  config: { marker: '', signals: 'all' },
  setup(ctx) {
    let seen = 0
    ctx.on('exec:events', (ev) => {
      seen++
      if (ev.kind !== 1 || !(ev.args[1] ?? '').startsWith(ctx.config.marker)) return
      const marker = ev.args[1]
      const process = { pid: ev.pid, executablePath: ev.filename, commandLine: ev.args.join(' ') }
      const attributes = {
        'process.pid': ev.pid,
        'process.parent_pid': ev.ppid,
        'process.executable.path': ev.filename,
        'process.command_args': ev.args,
      }
      const now = Date.now() * 1e6
      ctx.emit.span({ name: 'exec ' + marker, kind: 'internal', startTimeNs: now, endTimeNs: now + 1000, attributes, process })
      if (ctx.config.signals === 'all') {
        ctx.emit.metric({ name: 'e2e.execs', kind: 'counter', value: 1, unit: '{exec}', attributes: { 'process.executable.path': ev.filename, 'e2e.marker': marker } })
        ctx.emit.log({ timeNs: now, severity: 'info', eventName: 'process.exec', body: ev.args.join(' '), attributes, process })
        ctx.emit.profile({
          type: 'cpu',
          frames: [{ address: 0x1000, function: 'e2e_leaf' }, { address: 0x2000, function: 'main', mapping: { file: ev.filename } }],
          values: [1, 10000000],
          labels: { 'e2e.marker': marker },
          process,
        })
      }
      ctx.log.info('handled ' + marker + ' pid ' + ev.pid + ' after ' + seen + ' events')
    })
  },
})
`

interface Run {
  collector: Collector
  output(): string
  /** Resolves with the exit code. */
  exited: Promise<number | null>
  kill(signal: NodeJS.Signals): void
  /** Polls the runtime's output; fails with it on timeout. */
  waitForOutput(pattern: RegExp, what: string, timeoutMs?: number): Promise<void>
}

/** Starts a Collector and `periscope run` exporting to it, with the plugin above and `exporter` settings. */
async function startRun(t: TestContext, marker: string, exporter: Json, pluginConfig: Json = {}): Promise<Run> {
  const dir = await mkdtemp(join(tmpdir(), 'periscope-run-collector-'))
  const started: { collector?: Collector; child?: ChildProcess; exited?: Promise<unknown> } = {}
  // the runtime goes first, while the Collector is still up to receive its final flush
  t.after(async () => {
    const { child } = started
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await started.exited
    }
    await started.collector?.stop()
    await rm(dir, { recursive: true, force: true })
  })
  const plugins = join(dir, 'plugins')
  await mkdir(plugins)
  await mkdir(join(dir, 'collector'))
  await writeFile(join(plugins, 'e2e-exec.ts'), PLUGIN)
  const config = {
    admin: { socket: join(dir, 'admin.sock') },
    exporter: { dataDir: join(dir, 'data'), prometheus: { enabled: false }, ...exporter },
    // only the plugin under test: the shipped ones would trace this test's own OTLP traffic too
    plugins: { 'e2e-exec': { config: { marker, ...pluginConfig } }, ...withoutShippedPlugins() },
  }
  // JSON is YAML: no hand-written indentation to get wrong
  await writeFile(join(dir, 'periscope.yaml'), JSON.stringify(config, null, 2))
  const collector = (started.collector = await startCollector({ outDir: join(dir, 'collector') }))
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('OTEL_')) env[key] = value
  }
  env.OTEL_EXPORTER_OTLP_ENDPOINT = collector.httpEndpoint
  const child = spawn(node, [join(root, 'runtime/cli.ts'), 'run', '--plugins', plugins, '--config', join(dir, 'periscope.yaml')], {
    cwd: dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr.on('data', (d: Buffer) => (output += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)))
  started.child = child
  started.exited = exited
  const run: Run = {
    collector,
    output: () => output,
    exited,
    kill: (signal) => child.kill(signal),
    async waitForOutput(pattern, what, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs
      while (!pattern.test(output)) {
        if (child.exitCode !== null) throw new Error(`periscope run exited (${child.exitCode}) while waiting for ${what}:\n${output}`)
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; periscope run output:\n${output}`)
        await sleep(20)
      }
    },
  }
  await run.waitForOutput(/running 1 of \d+ plugins/, 'the runtime to start')
  return run
}

/**
 * Runs the marker binary; once the plugin has handled its exec, returns its pid, its argv and how
 * many exec events the plugin had seen by then.
 */
async function execMarker(run: Run, marker: string): Promise<{ pid: number; args: string[]; seen: number }> {
  const args = [MARKER_BINARY, marker]
  const result = spawnSync(MARKER_BINARY, [marker])
  assert.equal(result.status, 0, `${MARKER_BINARY} ${marker} failed: ${result.stderr}`)
  const handled = new RegExp(`handled ${marker} pid ${result.pid} after (\\d+) events`)
  await run.waitForOutput(handled, `the plugin to handle ${marker}`)
  return { pid: result.pid as number, args, seen: Number(handled.exec(run.output())?.[1]) }
}

const valueOf = (point: Json): number => Number(point.asDouble ?? point.asInt)

/** The data points of every metric named `name` in one export line, as [attributes, value]. */
function pointsIn(line: Json, name: string): [Record<string, unknown>, number][] {
  return flatten('metrics', [line])
    .filter((m) => m.item.name === name)
    .flatMap((m) => ((m.item.sum ?? m.item.gauge) as { dataPoints: Json[] }).dataPoints)
    .map((p) => [attributesOf(p.attributes), valueOf(p)])
}

/** The value of `name{attributes}` in one export line; undefined when absent. */
function pointValue(line: Json, name: string, attributes: Record<string, unknown>): number | undefined {
  return pointsIn(line, name).find(([a]) => JSON.stringify(a) === JSON.stringify(attributes))?.[1]
}

const ours = (items: FlatItem[]): FlatItem[] => items.filter((i) => i.scope.name === 'e2e-exec')

function expectedResource(exec: { pid: number; args: string[] }): Record<string, unknown> {
  return {
    'service.name': 'echo',
    'process.pid': exec.pid,
    'process.executable.path': MARKER_BINARY,
    'process.executable.name': 'echo',
    'process.command_line': exec.args.join(' '),
    'collection.method': 'ebpf',
  }
}

function expectedAttributes(exec: { pid: number; args: string[] }): Record<string, unknown> {
  return {
    'process.pid': exec.pid,
    'process.parent_pid': process.pid,
    'process.executable.path': MARKER_BINARY,
    'process.command_args': exec.args,
  }
}

/** Resource attributes that must match exactly; the rest (host.*, telemetry.sdk.*) only exist. */
function resourceSubset(resource: Record<string, unknown>): Record<string, unknown> {
  const keys = ['service.name', 'process.pid', 'process.executable.path', 'process.executable.name', 'process.command_line', 'collection.method']
  return Object.fromEntries(keys.filter((k) => k in resource).map((k) => [k, resource[k]]))
}

interface Dictionary {
  stringTable: string[]
  functionTable: { nameStrindex?: number }[]
  locationTable: { line?: { functionIndex?: number }[] }[]
  attributeTable: { key: string; value: Json }[]
}

/** Every profile sample in the Collector's profiles file, decoded against its line's dictionary. */
function profileSamples(lines: Json[]): { resource: Record<string, unknown>; scope: string | undefined; functions: string[]; values: number[]; labels: Record<string, unknown> }[] {
  const out = []
  for (const line of lines) {
    const dictionary = line.dictionary as Dictionary
    const str = (index: number | undefined) => dictionary.stringTable[index ?? 0]
    for (const { resource, scope, item } of flatten('profiles', [line])) {
      const locations = (item.locationIndices as number[] | undefined) ?? []
      for (const sample of item.sample as { locationsStartIndex?: number; locationsLength: number; value: string[]; attributeIndices?: number[] }[]) {
        const start = sample.locationsStartIndex ?? 0
        const functions = locations.slice(start, start + sample.locationsLength).map((i) => str(dictionary.functionTable[dictionary.locationTable[i].line?.[0]?.functionIndex ?? 0].nameStrindex))
        const labels = attributesOf((sample.attributeIndices ?? []).map((i) => dictionary.attributeTable[i]))
        out.push({ resource, scope: scope.name, functions, values: sample.value.map(Number), labels })
      }
    }
  }
  return out
}

test('periscope run: exec events become exact spans, metrics, logs and profiles in a real Collector, with self-metrics; SIGTERM flushes all', { timeout: 180_000 }, async (t) => {
  const marker = `periscope-e2e-${randomBytes(4).toString('hex')}-`
  const run = await startRun(t, marker, {
    batch: { intervalMs: 100 },
    metrics: { intervalMs: 1000 },
    // profiles leave only at the interval or at shutdown: with ten minutes, only the final flush can deliver them
    profiles: { intervalMs: 600_000 },
  })
  const { collector } = run

  const execs = []
  for (let n = 0; n < 3; n++) execs.push(await execMarker(run, `${marker}${n}`))

  // while running: spans, logs, the plugin's metric and the runtime's self-metrics arrive
  const spanCount = (lines: Json[]) => ours(flatten('traces', lines)).length
  const logCount = (lines: Json[]) => ours(flatten('logs', lines)).length
  await collector.waitFor('traces', (lines) => spanCount(lines) >= 3)
  await collector.waitFor('logs', (lines) => logCount(lines) >= 3)
  const live = await collector.waitFor('metrics', (lines) =>
    lines.some((line) => pointsIn(line, 'e2e.execs').length === 3 && (pointValue(line, 'periscope.plugin.events.handled', { plugin: 'e2e-exec' }) ?? 0) >= 3))
  const liveLine = live.findLast((line) => pointsIn(line, 'e2e.execs').length === 3) as Json
  assert.ok((pointValue(liveLine, 'periscope.bpf.events.received', { 'bpf.object': 'exec' }) ?? 0) >= 3, 'the exec object received at least our execs')
  assert.equal(pointValue(liveLine, 'periscope.bpf.events.dropped', { 'bpf.object': 'exec' }), 0)
  assert.deepEqual(await collector.read('profiles'), [], 'profiles wait for their interval (or the final flush)')

  // one more exec just before SIGTERM: only the final flush can deliver its profile
  execs.push(await execMarker(run, `${marker}3`))
  run.kill('SIGTERM')
  assert.equal(await run.exited, 0, run.output())
  assert.match(run.output(), /SIGTERM: shutting down/)
  assert.doesNotMatch(run.output(), /periscope (warn|error):/, 'no warning or error from the runtime')

  // spans: exactly one per exec, nothing else from the plugin
  const spans = ours(flatten('traces', await collector.waitFor('traces', (lines) => spanCount(lines) >= 4)))
  assert.deepEqual(spans.map((s) => s.item.name), execs.map((e) => `exec ${e.args[1]}`))
  for (const [i, span] of spans.entries()) {
    assert.equal(span.item.kind, 1, 'internal')
    assert.deepEqual(attributesOf(span.item.attributes), expectedAttributes(execs[i]))
    assert.deepEqual(resourceSubset(span.resource), expectedResource(execs[i]))
    assert.equal(typeof span.resource['host.name'], 'string')
    assert.match(span.item.traceId as string, /^[0-9a-f]{32}$/)
  }

  // logs: exactly one per exec
  const records = ours(flatten('logs', await collector.waitFor('logs', (lines) => logCount(lines) >= 4)))
  assert.deepEqual(records.map((r) => r.item.body), execs.map((e) => ({ stringValue: e.args.join(' ') })))
  for (const [i, record] of records.entries()) {
    assert.equal(record.item.eventName, 'process.exec')
    assert.equal(record.item.severityText, 'INFO')
    assert.deepEqual(attributesOf(record.item.attributes), expectedAttributes(execs[i]))
    assert.deepEqual(resourceSubset(record.resource), expectedResource(execs[i]))
  }

  // profiles: one per process, delivered by the final flush
  const samples = profileSamples(await collector.waitFor('profiles', (lines) => profileSamples(lines).length >= 4))
  assert.deepEqual(
    samples.map((s) => ({ ...s, resource: resourceSubset(s.resource) })),
    execs.map((e) => ({
      resource: expectedResource(e),
      scope: 'e2e-exec',
      functions: ['e2e_leaf', 'main'],
      values: [1, 10_000_000],
      labels: { 'e2e.marker': e.args[1], pid: e.pid },
    })),
  )

  // metrics: the final collection (the last line, taken at shutdown) holds the plugin's counter and
  // the runtime's self-metrics as they were when it stopped
  const metricLines = await collector.waitFor('metrics', (lines) => lines.length > 0 && pointsIn(lines.at(-1) as Json, 'e2e.execs').length === 4)
  const final = metricLines.at(-1) as Json
  assert.deepEqual(
    pointsIn(final, 'e2e.execs').sort(([a], [b]) => String(a['e2e.marker']).localeCompare(String(b['e2e.marker']))),
    execs.map((e) => [{ 'process.executable.path': MARKER_BINARY, 'e2e.marker': e.args[1] }, 1]),
  )
  const execMetric = ours(flatten('metrics', [final])).find((m) => m.item.name === 'e2e.execs') as FlatItem
  assert.equal(execMetric.item.unit, '{exec}')
  assert.equal(execMetric.resource['collection.method'], 'ebpf')
  assert.equal(execMetric.resource['service.name'], 'periscope')

  // the plugin counted `seen` events up to the last exec, just before SIGTERM: the totals were read
  // at shutdown, not at the previous collection
  const { seen } = execs.at(-1) as { seen: number }
  const received = pointValue(final, 'periscope.bpf.events.received', { 'bpf.object': 'exec' }) ?? 0
  const handled = pointValue(final, 'periscope.plugin.events.handled', { plugin: 'e2e-exec' }) ?? 0
  assert.ok(handled >= seen && handled <= received, `periscope.plugin.events.handled ${handled} is between what the plugin saw (${seen}) and what the object received (${received})`)
  assert.equal(pointValue(final, 'periscope.bpf.events.dropped', { 'bpf.object': 'exec' }), 0)
  assert.equal(pointValue(final, 'periscope.bpf.listener.errors', { 'bpf.object': 'exec' }), 0, 'no batch listener threw')
  assert.deepEqual(
    pointsIn(final, 'periscope.plugin.events.dropped').map(([a, v]) => [a.reason, v]).sort(),
    [['cpu_limit', 0], ['failure', 0], ['queue_full', 0], ['rate_limit', 0], ['shutdown', 0], ['unsubscribed', 0]],
  )
  const cpu = pointValue(final, 'periscope.plugin.cpu.time', { plugin: 'e2e-exec' }) ?? 0
  assert.ok(cpu > 0 && cpu < 60, `plugin CPU time in seconds: ${cpu}`)
  assert.ok((pointValue(final, 'periscope.plugin.memory.usage', { plugin: 'e2e-exec' }) ?? 0) > 100_000, 'the plugin isolate heap in bytes')
  const selfMetric = flatten('metrics', [final]).find((m) => m.item.name === 'periscope.plugin.events.handled') as FlatItem
  assert.deepEqual(selfMetric.scope, { name: 'periscope' })
  assert.equal(selfMetric.resource['collection.method'], 'ebpf')
  for (const signal of ['traces', 'logs', 'profiles', 'metrics']) {
    assert.equal(pointValue(final, 'periscope.exporter.dropped', { signal, reason: 'queue_full' }), 0, `no ${signal} dropped`)
  }
  assert.ok((pointValue(final, 'process.memory.usage', {}) ?? 0) > 10 * 1024 * 1024, 'the runtime\'s RSS')
})

test('periscope run: a Collector outage drops only what exceeds the queue, counts it in periscope.exporter.dropped, and export resumes', { timeout: 180_000 }, async (t) => {
  const QUEUE = 20
  const BEFORE = 3
  const DURING = 50
  const marker = `periscope-outage-${randomBytes(4).toString('hex')}-`
  const run = await startRun(t, marker, {
    batch: { maxSize: 5, intervalMs: 50 },
    queue: { spans: QUEUE },
    retry: { initialBackoffMs: 100, maxBackoffMs: 300 },
    exportTimeoutMs: 1000,
    metrics: { intervalMs: 300 },
  }, { signals: 'spans' })
  const { collector } = run
  const sentTraces = (line: Json) => pointValue(line, 'periscope.exporter.sent', { signal: 'traces' })
  const before = (i: number) => `${marker}before-${i}`
  const during = (i: number) => `${marker}during-${String(i).padStart(3, '0')}`

  for (let i = 0; i < BEFORE; i++) await execMarker(run, before(i))
  // the exporter itself reports the spans acknowledged, so none is in flight when the Collector stops
  await collector.waitFor('metrics', (lines) => lines.some((line) => sentTraces(line) === BEFORE))

  await collector.stop()
  for (let i = 0; i < DURING; i++) await execMarker(run, during(i))
  await run.waitForOutput(/traces: export to .* failed/, 'the outage warning')
  // every send that started before the last span was queued has failed by now (connection
  // refused), so whatever goes out next is among the newest QUEUE spans
  await sleep(1500)
  await collector.start()

  const expected = [...Array.from({ length: BEFORE }, (_, i) => before(i)), ...Array.from({ length: QUEUE }, (_, i) => during(DURING - QUEUE + i))]
  const names = (lines: Json[]) => ours(flatten('traces', lines)).map((s) => s.item.name as string)
  await collector.waitFor('traces', (lines) => names(lines).length >= expected.length, 20_000)
  // the exported drop count reaches its final value once the queue has drained
  const metricLines = await collector.waitFor('metrics', (lines) => lines.some((line) => sentTraces(line) === BEFORE + QUEUE), 20_000)
  const recovered = metricLines.find((line) => sentTraces(line) === BEFORE + QUEUE) as Json
  assert.equal(pointValue(recovered, 'periscope.exporter.dropped', { signal: 'traces', reason: 'queue_full' }), DURING - QUEUE, 'every span beyond the queue is counted')
  assert.ok((pointValue(recovered, 'periscope.exporter.failed', { signal: 'traces' }) ?? 0) > 0, 'the failed exports are counted')
  const beforeOutage = metricLines.find((line) => sentTraces(line) === BEFORE) as Json
  assert.equal(pointValue(beforeOutage, 'periscope.exporter.dropped', { signal: 'traces', reason: 'queue_full' }), 0)

  run.kill('SIGTERM')
  assert.equal(await run.exited, 0, run.output())
  assert.match(run.output(), new RegExp(`traces: export to .* recovered after \\d+ failed attempt\\(s\\); ${DURING - QUEUE} item\\(s\\) dropped so far`), 'recovery is reported with the drop count')
  // drop-oldest: the spans from before the outage and exactly the newest QUEUE of it, once each
  // (several batches are in flight after recovery, so they may arrive in any order)
  const exported = names(await collector.read('traces')).map((n) => n.replace(/^exec /, ''))
  assert.deepEqual([...exported].sort(), [...expected].sort())
  assert.equal(new Set(exported).size, exported.length, 'no span exported twice')
})
