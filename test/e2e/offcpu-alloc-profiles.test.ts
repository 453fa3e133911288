/**
 * Off-CPU and allocation profiles end to end: `periscope run` with only the shipped offcpu-profile
 * and alloc-profile plugins (both opt-in, turned on here, a 2 s interval), their gzipped pprof
 * files decoded as a backend would read them:
 * - a program that sleeps 200 ms in nap() five times (test/bpf/fixtures/offcpu-sleeper.c) shows
 *   five times 200 ms off-CPU at nanosleep < nap < main, and nothing at its 100 µs short naps
 *   (under the 100 ms threshold);
 * - a program with known malloc sizes (test/bpf/fixtures/alloc-profile-workload.c), every
 *   allocation sampled, shows each function's alloc_space and inuse_space exactly.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcessByStdio } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { pollUntil } from '../peers/poll.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { storedProfiles } from '../peers/pprof-files.ts'

const root = join(import.meta.dirname, '../..')
const work = mkdtempSync(join(tmpdir(), 'periscope-offcpu-alloc-'))
const NAPS = 5
const MS = 1e6

/** One pprof sample: its file (they sort by time), its sample types, values, labels and functions leaf first. */
interface Sampled {
  file: string
  types: string[]
  values: number[]
  pid: number
  functions: string[]
}

function readProfiles(periscope: Periscope): Sampled[] {
  return storedProfiles(periscope).flatMap(({ file, profile }) => {
    const str = (i: unknown) => profile.stringTable.strings[Number(i)]!
    const types = profile.sampleType.map((t) => `${str(t.type)}/${str(t.unit)}`)
    const functions = new Map(profile.function.map((f) => [Number(f.id), str(f.name)]))
    const locations = new Map(profile.location.map((l) => [Number(l.id), l.line.map((line) => functions.get(Number(line.functionId)) ?? '?')[0] ?? '?']))
    return profile.sample.map((sample) => ({
      file,
      types,
      values: sample.value.map(Number),
      pid: Number(sample.label.find((l) => str(l.key) === 'pid')?.num),
      functions: sample.locationId.map((id) => locations.get(Number(id))!),
    }))
  })
}

type Waiting = ChildProcessByStdio<Writable, Readable, null> & { output: () => string }

/** A fixture that waits for a byte on stdin before it starts. */
function startWaiting(binary: string, args: string[]): Waiting {
  const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'ignore'], env: {} })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  return Object.assign(child, { output: () => output })
}

const calledFromMain = (s: Sampled, fn: string): boolean => {
  const at = s.functions.indexOf(fn)
  return at >= 0 && s.functions[at + 1] === 'main'
}

describe('off-CPU and allocation profiles from periscope run', { timeout: 600_000 }, () => {
  let periscope: Periscope
  let sleeper: Waiting
  let workload: Waiting

  before(async () => {
    execFileSync('cc', ['-O2', '-fomit-frame-pointer', '-o', join(work, 'sleeper'), join(root, 'test/bpf/fixtures/offcpu-sleeper.c')])
    execFileSync('cc', ['-O2', '-fomit-frame-pointer', '-o', join(work, 'workload'), join(root, 'test/bpf/fixtures/alloc-profile-workload.c')])
    sleeper = startWaiting(join(work, 'sleeper'), [String(NAPS)])
    workload = startWaiting(join(work, 'workload'), ['1'])
    periscope = await startPeriscope({
      shipped: ['offcpu-profile', 'alloc-profile'],
      config: {
        receiver: { profiles: { off_cpu: true, collect_interval: '2s', target_pids: [sleeper.pid] } },
        plugins: {
          // a loaded machine may keep a woken 100 µs nap waiting tens of ms for a CPU, not 100
          'offcpu-profile': { config: { min_block_ms: 100 } },
          'alloc-profile': { enabled: true, target_pids: [workload.pid], config: { sample_bytes: 0 } },
        },
        // every allocation is a sample: 2 KB of stack (the workload's frames fit in a few hundred
        // bytes) keeps each record small enough for the ring to hold them all, however late the reader
        objects: { alloc_stacks: { stack_bytes: 2048 } },
        exporter: { profiles: { intervalMs: 2000 } },
      },
      ready: /running 2 of \d+ plugins/,
    })
    await periscope.waitForOutput(/off-CPU profiles of blocks of 100 ms or more in pids/, 'the offcpu-profile plugin to start')
    await periscope.waitForOutput(/allocation profiles sampled every allocation for pid/, 'the alloc-profile plugin to start')
    sleeper.stdin.write('g')
    workload.stdin.write('g')
  })

  after(async () => {
    sleeper?.kill('SIGKILL')
    workload?.kill('SIGKILL')
    await periscope?.stop()
    rmSync(work, { recursive: true, force: true })
  })

  it('five naps of 200 ms: about 1 s off-CPU at nanosleep < nap < main, none at the short naps', async (t) => {
    let naps: Sampled[] = []
    const napNs = () => naps.reduce((sum, s) => sum + s.values[0]!, 0)
    await pollUntil(() => {
      naps = readProfiles(periscope).filter((s) => s.pid === sleeper.pid && calledFromMain(s, 'nap'))
      return napNs() >= NAPS * 200 * MS
    }, { what: `${NAPS} naps of 200 ms in the off-CPU profiles`, timeoutMs: 120_000, intervalMs: 500 })
    const all = readProfiles(periscope).filter((s) => s.pid === sleeper.pid)
    t.diagnostic(`${napNs() / MS} ms at ${naps[0]!.functions.join(' < ')}`)
    assert.deepEqual(naps[0]!.types, ['off_cpu/nanoseconds'])
    // each nap blocks 200 ms and then waits for a CPU (a few ms, some tens on a loaded machine):
    // five naps and not six
    assert.ok(napNs() < (NAPS + 1) * 200 * MS, `${napNs() / MS} ms in ${NAPS} naps of 200 ms`)
    for (const nap of naps) {
      assert.ok(nap.functions.some((f) => /nanosleep/.test(f)), nap.functions.join(' < '))
      assert.equal(nap.functions.at(-1), '_start')
    }
    assert.equal(all.filter((s) => s.functions.includes('short_naps')).length, 0)
  })

  it('every allocation sampled: each function\'s alloc_space and inuse_space exactly', async (t) => {
    const expected: Record<string, [number, number]> = {
      small_blocks: [100_000, 100_000],
      big_blocks: [1_000_000, 500_000],
      zeroed_blocks: [100_000, 0],
      grown_blocks: [208_000, 204_800],
    }
    await pollUntil(() => workload.output() === 'done\n', { what: 'the workload to finish', timeoutMs: 120_000 })
    let byFunction = new Map<string, [number, number]>()
    await pollUntil(() => {
      const samples = readProfiles(periscope).filter((s) => s.pid === workload.pid && s.types[0] === 'alloc_space/bytes')
      // alloc_space adds up over the intervals; inuse_space is the last interval's
      const last = samples.at(-1)?.file
      byFunction = new Map()
      for (const s of samples) {
        const fn = Object.keys(expected).find((f) => calledFromMain(s, f))
        if (fn === undefined) continue
        const totals = byFunction.get(fn) ?? [0, 0]
        totals[0] += s.values[0]!
        if (s.file === last) totals[1] += s.values[1]!
        byFunction.set(fn, totals)
      }
      return Object.entries(expected).every(([fn, [allocated]]) => (byFunction.get(fn)?.[0] ?? 0) >= allocated)
    }, { what: 'every function\'s bytes in the allocation profiles', timeoutMs: 120_000, intervalMs: 500, details: () => `have ${JSON.stringify([...byFunction])}; ${periscope.output().split('\n').filter((l) => /alloc/.test(l)).join('\n')}` })
    t.diagnostic(JSON.stringify([...byFunction]))
    for (const [fn, values] of Object.entries(expected)) assert.deepEqual(byFunction.get(fn), values, fn)
  })
})
