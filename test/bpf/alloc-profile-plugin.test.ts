/**
 * The shipped alloc-profile plugin in the runtime (real kernel, the alloc_stacks object, stacks
 * unwound and named by the host): every allocation of a program with known malloc sizes
 * (test/bpf/fixtures/alloc-profile-workload.c) sampled, each function's bytes allocated and in
 * use come out exactly; after a hot reload the new version still reports the bytes in use of the
 * blocks the old one saw allocated.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { ProfileSampleInput } from '../../runtime/telemetry/signals.ts'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { root } from './kernel.ts'
import { decodersPath, provider } from './plugin-api-fixture.ts'

const work = mkdtempSync(join(tmpdir(), 'periscope-alloc-profile-plugin-'))
const workload = join(work, 'workload')
const source = readFileSync(join(root, 'plugins/alloc-profile.ts'), 'utf8')
/** [alloc_space, inuse_space] of each function of one round of the workload. */
const expected: Record<string, [number, number]> = {
  small_blocks: [100_000, 100_000],
  big_blocks: [1_000_000, 500_000],
  zeroed_blocks: [100_000, 0],
  grown_blocks: [208_000, 204_800],
}

before(() => {
  execFileSync('cc', ['-O2', '-fomit-frame-pointer', '-o', workload, join(root, 'test/bpf/fixtures/alloc-profile-workload.c')])
})
after(() => rmSync(work, { recursive: true, force: true }))

/** The workload function a sample's stack was allocated in (called from main), if any. */
const functionOf = (sample: ProfileSampleInput): string | undefined => {
  const names = sample.frames.map((f) => f.function)
  return Object.keys(expected).find((fn) => names[0] === fn && names[1] === 'main')
}

describe('the alloc-profile plugin', { timeout: 300_000 }, () => {
  let harness: Harness | undefined

  after(async () => { await harness?.close() })

  it('gives each function\'s alloc_space and inuse_space exactly, and the bytes in use still after a hot reload', async () => {
    const child = spawn(workload, ['1'], { stdio: ['pipe', 'pipe', 'ignore'], env: {} })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    try {
      harness = await startHarness({
        provider: provider(), decodersPath,
        plugins: { 'alloc-profile.ts': source },
        config: {
          plugins: { 'alloc-profile': { enabled: true, target_pids: [child.pid], config: { sample_bytes: 0, collect_interval_ms: 500 } } },
          // every allocation is a sample: 2 KB of stack (the workload's frames fit in a few hundred
          // bytes) keeps each record small enough for the ring to hold them all, however late the reader
          objects: { alloc_stacks: { stack_bytes: 2048 } },
        },
      })
      const h = harness
      await h.waitFor(() => h.log.lines.some((l) => l.message.includes(`allocation profiles sampled every allocation for pid ${child.pid}`)), 'the plugin to follow the workload', 60_000)
      const samples = () => h.sink.signals('alloc-profile').profiles
      child.stdin.write('g')
      await h.waitFor(() => output === 'done\n', 'the workload to finish', 60_000)

      // alloc_space adds up over the collections; inuse_space is each collection's
      const totals = (from: number) => {
        const byFunction = new Map<string, [number, number]>()
        for (const sample of samples().slice(from)) {
          const fn = functionOf(sample)
          if (fn === undefined) continue
          const [allocated] = byFunction.get(fn) ?? [0, 0]
          byFunction.set(fn, [allocated + sample.values[0]!, sample.values[1]!])
        }
        return byFunction
      }
      await h.waitFor(() => Object.entries(expected).every(([fn, [allocated]]) => totals(0).get(fn)?.[0] === allocated), 'every function\'s bytes allocated', 60_000)
      for (const [fn, values] of Object.entries(expected)) assert.deepEqual(totals(0).get(fn), values, fn)
      // the kernel's counts of blocks and calls it could not store were read, and are none
      assert.deepEqual(h.sink.signals('alloc-profile').metrics.filter((m) => m.name === 'periscope.profile.samples.lost'), [])

      const reloaded = h.nextEvent('loaded', 'alloc-profile', 60_000)
      h.write('alloc-profile.ts', `${source}\n// reloaded\n`)
      await reloaded
      const from = samples().length
      await h.waitFor(() => ['small_blocks', 'big_blocks', 'grown_blocks'].every((fn) => totals(from).has(fn)), 'the new version\'s bytes in use', 60_000)
      for (const fn of ['small_blocks', 'big_blocks', 'grown_blocks']) assert.deepEqual(totals(from).get(fn), [0, expected[fn]![1]], fn)
    } finally {
      child.kill('SIGKILL')
    }
  })
})
