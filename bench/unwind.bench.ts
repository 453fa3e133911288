/**
 * What user-space unwinding of CPU samples costs (issue 12: bpf/lib/stacks.bpf.c copies each
 * sample's user stack, runtime/profiling/unwind.ts walks it with .eh_frame tables), for stack
 * copies of 8, 16 and 32 KB, on programs built without frame pointers: the -O2
 * -fomit-frame-pointer burner of the tests (a shallow main-thread stack), the same burner 150
 * frames of 128 bytes deep (19 KB of stack), a busy Debian redis-server, and a busy node process
 * (node's .eh_frame has 100,000 FDEs: half a million rows if read whole).
 *
 * Per program and copy size, over `--samples` samples at 99 Hz:
 * - bytes copied per sample (the stack from sp up to the copy limit or the stack's end), and the
 *   ring buffer record reserved for it;
 * - the BPF program's run time per sample (the kernel's BPF stats), less what its runs for other
 *   processes' samples cost (measured first, alone: the tgid check and the stats' clock reads);
 * - the unwinder's CPU time per sample warm (median of `--reps` passes over the samples: the FDEs
 *   sampled are in the tables' row caches), the first sample cold (a new unwinder: each file's
 *   .eh_frame and FDE index read, the sampled FDEs' instructions run) and the first pass cold;
 * - the share of samples whose stack is complete (reaches _start or the thread start).
 * And at 8 KB with the reader woken only once a MB waits in the ring (wakeup_bytes), as a
 * profiler that drains on its collect interval would run it.
 * No target: the figures choose the default copy size and back the design choice.
 *
 *   node_modules/.bin/node bench/unwind.bench.ts [--samples 300] [--reps 20]
 *   npm run bench -- unwind
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { attachPerfEvent } from '../runtime/bpf/links.ts'
import { ObjectSpec } from '../runtime/bpf/object.ts'
import { enableRunTimeStats } from '../runtime/bpf/stats.ts'
import { SAMPLE_STACK_SIZE, StackUnwinder, UNWIND_COMPLETE } from '../runtime/profiling/unwind.ts'
import { sampleProcess } from '../test/bpf/unwind-fixture.ts'
import { REDIS_BENCHMARK, startRedis } from '../test/peers/redis.ts'
import { median, repoRoot } from './common.ts'

const { values: args } = parseArgs({ options: { samples: { type: 'string', default: '300' }, reps: { type: 'string', default: '20' } } })
const SAMPLES = Number(args.samples)
const REPS = Number(args.reps)
const SIZES = [8192, 16384, 32768]
const RECORD_HEADER = 72
const PAGE = 4096

interface Workload {
  name: string
  pid: number
  /** Started once the sampler is attached (a load generator), stopped after. */
  load?: () => ChildProcess
  stop: () => Promise<void>
}

async function burner(depth: number | undefined, binary: string): Promise<Workload> {
  const child = spawn(binary, depth === undefined ? [] : [String(depth)], { stdio: 'ignore' })
  return {
    name: depth === undefined ? 'burner, shallow stack' : `burner, ${depth} frames deeper`,
    pid: child.pid!,
    stop: async () => { child.kill('SIGKILL') },
  }
}

/** A node process busy in its own C++ (JSON) and JIT code. */
async function nodeProcess(): Promise<Workload> {
  const child = spawn(process.execPath, ['-e', 'const o = { a: [1, 2, 3], b: "x".repeat(100) }; for (;;) JSON.parse(JSON.stringify(o))'], { stdio: 'ignore' })
  return {
    name: `node (${process.execPath}) in JSON.parse/stringify`,
    pid: child.pid!,
    stop: async () => { child.kill('SIGKILL') },
  }
}

async function redis(): Promise<Workload> {
  const server = await startRedis()
  return {
    name: 'redis-server under redis-benchmark',
    pid: server.pid,
    load: () => spawn(REDIS_BENCHMARK, ['-h', '127.0.0.1', '-p', String(server.port), '-q', '-l', '-n', '1000000', '-P', '4', '-r', '100000', '-t', 'set,get,incr,lpush,lpop,hset,zadd'], { stdio: 'ignore' }),
    stop: () => server.stop(),
  }
}

/** CPU time (µs) of `fn`, from this process's rusage: what a busy machine's waiting leaves out. */
function cpuMicros(fn: () => void): number {
  const start = process.cpuUsage()
  fn()
  const used = process.cpuUsage(start)
  return used.user + used.system
}

async function measure(workload: Workload, stackBytes: number, wakeupBytes = 0): Promise<string> {
  let load: ChildProcess | undefined
  const sampled = await sampleProcess(workload.pid, { stackBytes, wakeupBytes, count: SAMPLES, whileSampling: () => { load = workload.load?.() } })
  load?.kill('SIGKILL')
  const { records } = sampled
  const copied = records.reduce((sum, r) => sum + r.getUint32(SAMPLE_STACK_SIZE, true), 0) / records.length
  const frames = new Float64Array(256)
  const firstSample = cpuMicros(() => new StackUnwinder().unwindSample(records[0]!, 0, frames))
  const unwinder = new StackUnwinder()
  let complete = 0, depth = 0
  const cold = cpuMicros(() => {
    for (const record of records) {
      depth += unwinder.unwindSample(record, 0, frames)
      if (unwinder.end === UNWIND_COMPLETE) complete++
    }
  })
  const warm = median(Array.from({ length: REPS }, () => cpuMicros(() => {
    for (const record of records) unwinder.unwindSample(record, 0, frames)
  }))) / records.length
  // every CPU's samples run the program; those of other processes return at the tgid check,
  // at the cost measured alone (filteredRunNs)
  const bpfNsPerSample = (sampled.programRunTimeNs - (sampled.programRuns - records.length) * filteredRunNs) / records.length
  return [
    `${(stackBytes / 1024).toString().padStart(2)} KB${wakeupBytes === 0 ? '' : `, woken per ${wakeupBytes >> 20} MB`}`,
    `${Math.round(copied).toString().padStart(6)} B copied`,
    `${(RECORD_HEADER + stackBytes + PAGE).toString().padStart(6)} B reserved`,
    `bpf ${(bpfNsPerSample / 1000).toFixed(1).padStart(5)} µs/sample`,
    `unwind warm ${warm.toFixed(1).padStart(5)} µs/sample, cold: first sample ${(firstSample / 1000).toFixed(1)} ms, first pass ${(cold / 1000).toFixed(0)} ms`,
    `${(depth / records.length).toFixed(1).padStart(5)} frames`,
    `complete ${(100 * complete / records.length).toFixed(1).padStart(5)}% of ${records.length}`,
    sampled.dropped > 0 ? `${sampled.dropped} dropped` : '',
  ].join('  ')
}

/** The program's mean run time over 3 s of samples while it targets a process that never runs (a sleep). */
async function filteredRunCost(): Promise<number> {
  const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' })
  const spec = ObjectSpec.open(path.join(repoRoot, 'bpf/lib/stacks.bpf.o'))
  spec.setSettings({ target_tgid: sleeper.pid! })
  const object = await spec.load()
  try {
    const links = attachPerfEvent(object, 'on_cpu_sample', { frequency: 99 })
    await new Promise((resolve) => setTimeout(resolve, 3000))
    for (const link of links) link.detach()
    const [program] = object.programStats()
    return program!.runCount === 0 ? 0 : program!.runTimeNs / program!.runCount
  } finally {
    object.close()
    sleeper.kill('SIGKILL')
  }
}

const work = mkdtempSync(path.join(tmpdir(), 'periscope-unwind-bench-'))
const binary = path.join(work, 'burner')
execFileSync('cc', ['-O2', '-fomit-frame-pointer', '-o', binary, path.join(repoRoot, 'test/bpf/fixtures/unwind-burner.c')])
const stats = enableRunTimeStats()
/** The program's time for a sample of another process (the tgid check alone): it runs for every CPU's samples. */
let filteredRunNs = 0
try {
  filteredRunNs = await filteredRunCost()
  console.log(`a sample of another process: bpf ${(filteredRunNs / 1000).toFixed(1)} µs (the kernel's BPF stats; their own clock reads included)`)
  for (const start of [() => burner(undefined, binary), () => burner(150, binary), redis, nodeProcess]) {
    const workload = await start()
    try {
      console.log(workload.name)
      for (const size of SIZES) console.log(`  ${await measure(workload, size)}`)
      console.log(`  ${await measure(workload, SIZES[0]!, 1 << 20)}`)
    } finally {
      await workload.stop()
    }
  }
} finally {
  stats.close()
  rmSync(work, { recursive: true, force: true })
}
