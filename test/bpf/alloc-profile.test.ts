/**
 * Allocation stack samples (bpf/lib/alloc_stacks.bpf.o on the real kernel, uprobes on the libc of
 * one process, stacks unwound by runtime/profiling/unwind.ts) of a C program built
 * `-O2 -fomit-frame-pointer` whose functions allocate known sizes
 * (test/bpf/fixtures/alloc-profile-workload.c): sampling every allocation gives each function's
 * bytes allocated and bytes in use exactly (in-use from the blocks left in `live`, named by their
 * sample's tid and time); sampling by bytes gives them within a few percent, from far fewer samples.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { decodeAllocStacksBlock, decodeAllocStacksLive, decodeStackSample, encodeAllocStacksOptions, ALLOC_STACKS_OPTIONS_SIZE } from '../../bpf/lib/alloc_stacks.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { probeAttach } from '../../runtime/bpf/features.ts'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import { StackUnwinder, UNWIND_COMPLETE } from '../../runtime/profiling/unwind.ts'
import { ALLOC_STACKS_OVERFLOW_IN_FLIGHT, ALLOC_STACKS_OVERFLOW_LIVE } from '../../runtime/protocols/alloc-stacks.ts'
import { pollUntil } from '../peers/poll.ts'
import { requireFeature, root } from './kernel.ts'
import { frameNamer } from './unwind-fixture.ts'

const work = mkdtempSync(join(tmpdir(), 'periscope-alloc-profile-'))
const workload = join(work, 'workload')
const functions = ['small_blocks', 'big_blocks', 'zeroed_blocks', 'grown_blocks'] as const
/** Per round of the workload: [bytes allocated, bytes in use at the end] by function. */
const perRound: Record<(typeof functions)[number], [number, number]> = {
  small_blocks: [100_000, 100_000],
  big_blocks: [1_000_000, 500_000],
  zeroed_blocks: [100_000, 0],
  grown_blocks: [3_200 + 204_800, 204_800],
}
/** Allocation calls per round (malloc, calloc and realloc). */
const CALLS_PER_ROUND = 1000 + 100 + 200 + 2 * 50

before(() => {
  execFileSync('cc', ['-O2', '-fomit-frame-pointer', '-o', workload, join(root, 'test/bpf/fixtures/alloc-profile-workload.c')])
})
after(() => rmSync(work, { recursive: true, force: true }))

const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer)

/** The libc the process maps (its executable mapping). */
function libcOf(pid: number): string {
  const line = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').find((l) => / r-xp .*\/libc[.-][^/]*$/.test(l))
  if (line === undefined) throw new Error(`process ${pid} maps no libc`)
  return line.slice(line.indexOf('/'))
}

interface Profile {
  /** By leaf function (the caller of malloc, called from main): [bytes allocated, bytes in use]. */
  byFunction: Map<string, [number, number]>
  samples: number
  /** Their mean size in the ring. */
  recordBytes: number
  /** Samples whose stack did not go leaf < main < … < _start, whole. */
  incomplete: string[]
  /** Blocks the `live` map could not take, and calls whose thread state could not be made. */
  overflows: { live: number; inFlight: number }
  dropped: number
}

/**
 * Runs the workload for `rounds` with the object's uprobes on its libc; its allocation profile.
 * With `step`, the workload waits after each `step` rounds until the samples so far were read: a
 * 2-CPU machine's reader does not keep up with a workload that allocates without pause.
 */
async function profileWorkload(rounds: number, sampleBytes: number, { ringBytes, step, liveBlocks }: { ringBytes?: number; step?: number; liveBlocks?: number } = {}): Promise<Profile> {
  const maxEntries = { ...(ringBytes === undefined ? {} : { samples: ringBytes }), ...(liveBlocks === undefined ? {} : { live: liveBlocks }) }
  const object = await openLibraryObject('alloc_stacks', { log: () => {}, maxEntries })
  const child = spawn(workload, [String(rounds), ...(step === undefined ? [] : [String(step)])], { stdio: ['pipe', 'pipe', 'ignore'], env: {} })
  const links: { detach(): void }[] = []
  try {
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    const options = new Uint8Array(ALLOC_STACKS_OPTIONS_SIZE)
    encodeAllocStacksOptions({ sample_bytes: sampleBytes }, new DataView(options.buffer), 0)
    object.map('options').update(u32(0), options)
    const records: DataView[] = []
    object.subscribe('samples', (batch) => forEachRecord(batch, (view, offset, size) => {
      records.push(new DataView(view.buffer.slice(view.byteOffset + offset, view.byteOffset + offset + size)))
    }))
    await pollUntil(() => { try { libcOf(child.pid!); return true } catch { return false } }, { what: 'the workload to map libc', timeoutMs: 30_000 })
    const libc = libcOf(child.pid!)
    for (const [func, returns] of [['malloc', true], ['calloc', true], ['realloc', true], ['free', false]] as const) {
      links.push(object.attachUprobe(`${func}_enter`, libc, { symbol: func, retprobe: false, pid: child.pid }))
      if (returns) links.push(object.attachUprobe(`${func}_exit`, libc, { symbol: func, retprobe: true, pid: child.pid }))
    }
    const failed = (): string | undefined => (child.exitCode === null ? undefined : 'the workload exited')
    child.stdin.write('g')
    for (let steps = 1; steps < Math.ceil(rounds / (step ?? rounds)); steps++) {
      await pollUntil(() => output.split('step\n').length > steps, { what: `the workload to finish step ${steps}`, timeoutMs: 60_000, failed })
      object.drainStreams()
      child.stdin.write('g')
    }
    await pollUntil(() => output.endsWith('done\n'), { what: 'the workload to finish its allocations', timeoutMs: 120_000, failed })
    object.drainStreams()
    return summarise(object, child.pid!, records)
  } finally {
    for (const link of links) link.detach()
    child.kill('SIGKILL')
    await object.close()
  }
}

function summarise(object: LibraryObject, pid: number, records: DataView[]): Profile {
  const unwinder = new StackUnwinder()
  const frames = new Float64Array(128)
  const name = frameNamer(pid, workload)
  const byFunction = new Map<string, [number, number]>()
  const bySample = new Map<string, [number, number]>()
  const incomplete: string[] = []
  for (const record of records) {
    const sample = decodeStackSample(record, 0, record.byteLength)
    assert.equal(sample.pid, pid)
    const names = name(frames.subarray(0, unwinder.unwindSample(record, 0, frames)))
    if (unwinder.end !== UNWIND_COMPLETE || names[1] !== 'main' || names.at(-1) !== '_start') incomplete.push(names.join(' < '))
    let totals = byFunction.get(names[0]!)
    if (totals === undefined) byFunction.set(names[0]!, totals = [0, 0])
    totals[0] += sample.value
    bySample.set(`${sample.tid}:${sample.timestamp_ns}`, totals)
  }
  for (const [key, value] of object.map('live').entries()) {
    const block = decodeAllocStacksBlock(new DataView(key.buffer, key.byteOffset, key.byteLength), 0)
    if (block.tgid !== pid) continue
    const live = decodeAllocStacksLive(new DataView(value.buffer, value.byteOffset, value.byteLength), 0)
    const totals = bySample.get(`${live.tid}:${live.timestamp_ns}`)
    assert.ok(totals !== undefined, `the live block at 0x${block.address.toString(16)} names a sample that was sent`)
    totals[1] += live.weight
  }
  const perCpu = object.map('overflows')
  const overflows = { live: 0, inFlight: 0 }
  for (const [reason, key] of [[ALLOC_STACKS_OVERFLOW_LIVE, 'live'], [ALLOC_STACKS_OVERFLOW_IN_FLIGHT, 'inFlight']] as const) {
    const bytes = perCpu.lookup(u32(reason))!
    for (let at = 0; at < bytes.byteLength; at += 8) overflows[key] += Number(new DataView(bytes.buffer, bytes.byteOffset + at, 8).getBigUint64(0, true))
  }
  return { byFunction, samples: records.length, recordBytes: Math.round(records.reduce((sum, r) => sum + r.byteLength, 0) / records.length), incomplete, overflows, dropped: object.object.dropped() }
}

describe('allocation stack samples of a program with known malloc sizes', () => {
  it('sampling every allocation: each function\'s bytes allocated and in use, exactly', async (t) => {
    if (!requireFeature(t, 'uprobes', await probeAttach('uprobe'))) return
    // 1,400 samples of a few KB each (the stack up to the environment) in a few ms, faster than any
    // reader: a ring that holds them all, so that no loss blurs the exact figures
    const profile = await profileWorkload(1, 0, { ringBytes: 1 << 24 })
    t.diagnostic(`${profile.samples} samples of ${profile.recordBytes} bytes, ${profile.dropped} dropped, ${JSON.stringify(profile.overflows)} overflows: ${JSON.stringify([...profile.byFunction])}`)
    assert.deepEqual(profile.overflows, { live: 0, inFlight: 0 })
    assert.equal(profile.dropped, 0)
    assert.deepEqual(profile.incomplete.filter((stack) => functions.some((f) => stack.startsWith(`${f} <`))), [], 'the workload\'s stacks are whole')
    for (const func of functions) assert.deepEqual(profile.byFunction.get(func), perRound[func], func)
  })

  it('a full live map: each block it could not take is counted, and the bytes in use are those of the blocks it holds', async (t) => {
    if (!requireFeature(t, 'uprobes', await probeAttach('uprobe'))) return
    // small_blocks' 1,000 kept blocks fill it; every later allocation of the round (100 big, 200
    // zeroed, 50 + 50 grown) and the stdout buffer of "done" find it full
    const profile = await profileWorkload(1, 0, { ringBytes: 1 << 24, liveBlocks: 1000 })
    assert.equal(profile.dropped, 0)
    assert.equal(profile.samples, 1401)
    assert.deepEqual(profile.overflows, { live: 401, inFlight: 0 })
    assert.deepEqual(profile.byFunction.get('small_blocks'), perRound.small_blocks)
    for (const func of ['big_blocks', 'zeroed_blocks', 'grown_blocks'] as const) assert.deepEqual(profile.byFunction.get(func), [perRound[func][0], 0], func)
  })

  it('sampling every 8 KiB on average: each function\'s bytes within 15%, from a sample per 8 KiB', async (t) => {
    if (!requireFeature(t, 'uprobes', await probeAttach('uprobe'))) return
    const rounds = 160
    const sampleBytes = 8192
    // 8 rounds: about 1,000 samples of 8 KB, half the ring
    const profile = await profileWorkload(rounds, sampleBytes, { ringBytes: 1 << 24, step: 8 })
    assert.deepEqual(profile.overflows, { live: 0, inFlight: 0 })
    assert.equal(profile.dropped, 0)
    const total = Object.values(perRound).reduce((sum, [bytes]) => sum + bytes, 0) * rounds
    t.diagnostic(`${profile.samples} samples for ${CALLS_PER_ROUND * rounds} calls and ${total} bytes: ${JSON.stringify([...profile.byFunction])}`)
    // a sample per 8 KiB: about total / 8 KiB of them (a big block may end several gaps, and is one sample)
    assert.ok(profile.samples <= 1.1 * total / sampleBytes && profile.samples >= 0.5 * total / sampleBytes, `${profile.samples} samples`)
    for (const func of functions) {
      const [allocated, inUse] = profile.byFunction.get(func) ?? [0, 0]
      const [expectAllocated, expectInUse] = perRound[func].map((bytes) => bytes * rounds)
      assert.ok(Math.abs(allocated - expectAllocated!) <= 0.15 * expectAllocated!, `${func}: ${allocated} bytes allocated, ${expectAllocated} expected`)
      if (expectInUse === 0) assert.equal(inUse, 0, func)
      else assert.ok(Math.abs(inUse - expectInUse!) <= 0.15 * expectInUse!, `${func}: ${inUse} bytes in use, ${expectInUse} expected`)
    }
  })
})
