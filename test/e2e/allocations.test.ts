// The allocations plugin end to end: a C program of known allocations
// (test/e2e/fixtures/alloc-workload.c, built with the system cc) runs first; `periscope run` with
// only the allocations plugin, switched on with that program's pid in target_pids, exports to a
// real Collector. After each step of the program, its calls by function, bytes allocated and
// freed, and bytes in use are exactly the program's; a process not named is not followed.
import assert from 'node:assert/strict'
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { attributesOf, flatten, startCollector, type Collector } from '../peers/otelcol.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { pollUntil } from '../peers/poll.ts'
import { afterStep1, afterStep2, buildAllocWorkload, inUseAfterStep1 } from './alloc-workload.ts'

type Json = Record<string, unknown>

const functions = ['malloc', 'calloc', 'realloc', 'free']

/** The latest value of each series of a counter or gauge whose attributes include `match`, summed. */
function latestTotal(lines: readonly Json[], name: string, match: Record<string, unknown>): number | undefined {
  const latest = new Map<string, number>()
  for (const { item } of flatten('metrics', lines)) {
    if (item.name !== name) continue
    const data = (item.sum ?? item.gauge) as Json
    for (const point of data.dataPoints as Json[]) {
      const attributes = attributesOf(point.attributes)
      if (!Object.entries(match).every(([key, value]) => attributes[key] === value)) continue
      latest.set(JSON.stringify(attributes), Number(point.asInt ?? point.asDouble))
    }
  }
  return latest.size === 0 ? undefined : [...latest.values()].reduce((a, b) => a + b, 0)
}

interface Workload {
  child: ChildProcessByStdio<Writable, Readable, null>
  said(line: string): Promise<void>
}

function startWorkload(binary: string): Workload {
  const child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const said = (line: string) => pollUntil(() => output.includes(`${line}\n`), {
    what: `the workload (pid ${child.pid}) to say "${line}"`, timeoutMs: 60_000, details: () => `it said ${JSON.stringify(output)}`,
  })
  return { child, said }
}

describe('allocation statistics through a real Collector', { timeout: 600_000 }, () => {
  let collector: Collector
  let periscope: Periscope
  let dir: string
  let workload: Workload
  let bystander: Workload

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'periscope-allocations-'))
    const binary = buildAllocWorkload(dir)
    workload = startWorkload(binary)
    bystander = startWorkload(binary)
    await workload.said('ready')
    await bystander.said('ready')
    collector = await startCollector()
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint,
      shipped: ['allocations'],
      ready: /running 1 of \d+ plugins/,
      config: {
        plugins: { allocations: { enabled: true, target_pids: [workload.child.pid], config: { collect_interval_ms: 500 } } },
        exporter: { metrics: { intervalMs: 500 } },
      },
    })
    await periscope.waitForOutput(new RegExp(`plugin allocations: allocation statistics .* for pid ${workload.child.pid} \\(/`), 'the allocations plugin to follow the workload')
  })

  after(async () => {
    workload?.child.kill()
    bystander?.child.kill()
    await periscope?.stop()
    await collector?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  /** Waits until the workload's exported counts are `want`, then checks every figure. */
  async function expectCounts(want: typeof afterStep1, inUse: number): Promise<Json[]> {
    const pid = workload.child.pid
    const figures = (lines: readonly Json[]) => ({
      calls: functions.map((f) => latestTotal(lines, 'process.memory.heap.calls', { 'process.pid': pid, 'code.function.name': f }) ?? 0),
      failures: latestTotal(lines, 'process.memory.heap.failures', { 'process.pid': pid }) ?? 0,
      allocated: latestTotal(lines, 'process.memory.heap.allocated', { 'process.pid': pid }) ?? 0,
      freed: latestTotal(lines, 'process.memory.heap.freed', { 'process.pid': pid }) ?? 0,
      unknownFrees: latestTotal(lines, 'process.memory.heap.unknown_frees', { 'process.pid': pid }) ?? 0,
      usage: latestTotal(lines, 'process.memory.heap.usage', { 'process.pid': pid }),
    })
    let seen: ReturnType<typeof figures> | undefined
    const lines = await collector.waitFor('metrics', (l) => {
      seen = figures(l)
      return seen.calls[3] === want.calls[3] && seen.freed === want.freed && seen.usage === inUse
    }, 180_000).catch((error: Error) => {
      throw new Error(`${error.message}\nthe workload's figures: ${JSON.stringify(seen)}\nperiscope output:\n${periscope.output().slice(-3000)}`)
    })
    assert.deepEqual(figures(lines), { ...want, usage: inUse })
    return lines
  }

  it('after step 1: exactly the calls and bytes the program made, and its blocks in use', async () => {
    workload.child.stdin.write('go\n')
    bystander.child.stdin.write('go\n')
    await workload.said('step 1')
    await bystander.said('step 1')
    const lines = await expectCounts(afterStep1, inUseAfterStep1)
    const [attributes] = flatten('metrics', lines).filter(({ item }) => item.name === 'process.memory.heap.allocated')
      .flatMap(({ item }) => ((item.sum as Json).dataPoints as Json[]).map((p) => attributesOf(p.attributes)))
    assert.deepEqual(attributes, { 'process.pid': workload.child.pid, 'process.executable.name': 'alloc-workload' })
    assert.equal(latestTotal(lines, 'process.memory.heap.calls', { 'process.pid': bystander.child.pid }), undefined, 'the process not named is not followed')
  })

  it('after step 2: everything freed, and one free of a block from before the probes', async () => {
    workload.child.stdin.write('go\n')
    await workload.said('step 2')
    await expectCounts(afterStep2, 0)
  })
})
