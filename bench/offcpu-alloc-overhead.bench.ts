/**
 * What the off-CPU and allocation profilers cost the processes they watch (issue 12), each against
 * a baseline measured in the same run, the configurations alternating in a rotating order round
 * by round. The watched program's CPU time (CLOCK_PROCESS_CPUTIME_ID: what the kernel charges it,
 * the programs run at its switches and its uprobes included, whatever else the loaded machine
 * runs meanwhile) is the figure; wall time is shown beside it; and the kernel's BPF stats give
 * the programs' own time per run.
 * - off-CPU (bpf/lib/offcpu.bpf.o): two threads pinned to one CPU hand a byte back and forth over
 *   pipes (bench/switch-pingpong.c), a context switch at each hand-over. Without the object; with
 *   it watching another process (every switch of the host runs the program, which filters it
 *   out); watching the ping-pong (every switch records a block and a wakeup; all blocks are under
 *   the 1 ms threshold, as most are on a busy host); and with no threshold (every block a
 *   sample, sent by a task work with its stack: what each long block costs); and watching the
 *   ping-pong the way kernels before 6.18 do (use_task_work 0: every block's stack copied at its
 *   switch-out). Added ns per context switch.
 * - allocations (bpf/lib/alloc_stacks.bpf.o): malloc(64) + free pairs (bench/malloc-loop.c)
 *   without the uprobes, with them sampling every 512 KiB on average (the plugin's default), and
 *   sampling every allocation. Added ns per malloc + free pair.
 * Medians over `--rounds` rounds. No target: the figures are reported in the README and the
 * plugins' docs.
 *
 *   node_modules/.bin/node bench/offcpu-alloc-overhead.bench.ts [--rounds 7] [--switch-rounds 50000] [--calls 200000]
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { encodeAllocStacksOptions, ALLOC_STACKS_OPTIONS_SIZE } from '../bpf/lib/alloc_stacks.types.ts'
import { encodeOffcpuOptions, OFFCPU_OBSERVE_TARGETS, OFFCPU_OPTIONS_SIZE } from '../runtime/protocols/offcpu.ts'
import { attachTracepoint, attachTracing, type Link } from '../runtime/bpf/links.ts'
import { ObjectSpec, type LoadedObject } from '../runtime/bpf/object.ts'
import { RingBufferReader } from '../runtime/bpf/ringbuf.ts'
import { enableRunTimeStats } from '../runtime/bpf/stats.ts'
import { openLibraryObject } from '../runtime/library/index.ts'
import { objectPath } from '../test/bpf/kernel.ts'
import { buildTool, median } from './common.ts'

const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '7' }, 'switch-rounds': { type: 'string', default: '50000' }, calls: { type: 'string', default: '200000' } } })
const ROUNDS = Number(args.rounds)

const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer)

/** A long-lived tool that answers each number written to it with one line of numbers. */
function tool(name: string): { pid: number; ask: (line: string) => Promise<number[]>; stop: () => void } {
  const child: ChildProcessWithoutNullStreams = spawn(buildTool(name), [])
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  return {
    pid: child.pid!,
    ask: async (line) => {
      child.stdin.write(`${line}\n`)
      const answer = await lines.next()
      if (answer.done) throw new Error(`${name} exited`)
      return answer.value.split(' ').map(Number)
    },
    stop: () => child.kill('SIGKILL'),
  }
}

interface Config {
  on(): void
  off(): void
}

/**
 * Per configuration, medians of: wall and CPU ns per operation, what else the measure gave (the
 * ping-pong's context switches per round), the BPF ns per program run and runs per operation.
 */
type Results<C extends string> = Record<C, { wall: number; cpu: number; extra: number; bpfNsPerRun: number; runsPerOp: number }>

/**
 * Runs `measure` (one warm-up, one measured) under each configuration, rotating their order each
 * round; `programs` are the object's programs whose BPF stats count.
 */
async function alternate<C extends string>(objects: LoadedObject[], programs: string[], operations: number, configs: Record<C, Config>, measure: () => Promise<number[]>): Promise<Results<C>> {
  const names = Object.keys(configs) as C[]
  const samples = Object.fromEntries(names.map((n) => [n, { wall: [] as number[], cpu: [] as number[], extra: [] as number[], bpf: [] as number[], runs: [] as number[] }])) as Record<C, Record<'wall' | 'cpu' | 'extra' | 'bpf' | 'runs', number[]>>
  const bpfTotals = () => objects.flatMap((o) => o.programStats()).filter((p) => programs.includes(p.name)).reduce((sum, p) => [sum[0]! + p.runTimeNs, sum[1]! + p.runCount], [0, 0])
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(round + i) % names.length]!
      configs[name].on()
      try {
        await measure()
        const [ns0, runs0] = bpfTotals()
        const [wall, cpu, extra] = await measure()
        const [ns1, runs1] = bpfTotals()
        samples[name].wall.push(wall!)
        samples[name].cpu.push(cpu!)
        samples[name].extra.push(extra ?? 0)
        if (runs1! > runs0!) samples[name].bpf.push((ns1! - ns0!) / (runs1! - runs0!))
        samples[name].runs.push((runs1! - runs0!) / operations)
      } finally {
        configs[name].off()
      }
    }
  }
  return Object.fromEntries(names.map((n) => [n, { wall: median(samples[n].wall), cpu: median(samples[n].cpu), extra: median(samples[n].extra), bpfNsPerRun: samples[n].bpf.length > 0 ? median(samples[n].bpf) : 0, runsPerOp: median(samples[n].runs) }])) as Results<C>
}

async function offCpu(): Promise<void> {
  const pingpong = tool('switch-pingpong')
  const bystander = tool('malloc-loop')
  const object = await ObjectSpec.open(objectPath('offcpu')).load()
  const stashingSpec = ObjectSpec.open(objectPath('offcpu'))
  stashingSpec.setSettings({ use_task_work: 0 })
  const stashing = await stashingSpec.load()
  const samples = [object, stashing].map((o) => new RingBufferReader(o, 'samples', { onBatch: () => {} }))
  try {
    const rounds = Number(args['switch-rounds'])
    const measure = () => pingpong.ask(String(rounds))
    const watch = (pid: number, minBlockNs: number, object: LoadedObject): Config => {
      let links: Link[] = []
      return {
        on: () => {
          const value = new Uint8Array(OFFCPU_OPTIONS_SIZE)
          encodeOffcpuOptions({ min_block_ns: minBlockNs, observe: OFFCPU_OBSERVE_TARGETS, pad: 0 }, new DataView(value.buffer), 0)
          object.map('options').update(u32(0), value)
          object.map('targets').update(u32(pid), new Uint8Array([1]))
          links = [attachTracing(object, 'handle_switch'), attachTracepoint(object, 'handle_exit', 'sched', 'sched_process_exit')]
        },
        off: () => {
          for (const link of links) link.detach()
          object.map('targets').delete(u32(pid))
        },
      }
    }
    const result = await alternate([object, stashing], ['handle_switch'], rounds, {
      none: { on: () => {}, off: () => {} },
      'another process watched': watch(bystander.pid, 1e6, object),
      'this one, 1 ms threshold': watch(pingpong.pid, 1e6, object),
      'this one, every block sent': watch(pingpong.pid, 0, object),
      'this one, stashed (pre-6.18)': watch(pingpong.pid, 1e6, stashing),
    }, measure)
    // the switches per round vary with what else runs on the CPU: compared per switch
    const perSwitch = (r: { cpu: number; extra: number }) => r.cpu / r.extra
    console.log('off-CPU: two threads on one CPU handing a byte over; CPU time of the process per context switch')
    for (const [name, r] of Object.entries(result)) {
      const added = perSwitch(r) - perSwitch(result.none)
      const vs = name === 'none' ? 'baseline' : `${added >= 0 ? '+' : ''}${added.toFixed(0)} ns per context switch; program ${r.bpfNsPerRun.toFixed(0)} ns a run`
      console.log(`  ${name.padEnd(28)} ${perSwitch(r).toFixed(0).padStart(6)} ns CPU/switch (${r.extra.toFixed(2)} switches/round, wall ${r.wall.toFixed(0)} ns/round)   ${vs}`)
    }
  } finally {
    for (const reader of samples) reader.close()
    object.close()
    stashing.close()
    pingpong.stop()
    bystander.stop()
  }
}

async function allocations(): Promise<void> {
  const loop = tool('malloc-loop')
  const object = await openLibraryObject('alloc_stacks', { log: () => {} })
  const libc = readFileSync(`/proc/${loop.pid}/maps`, 'utf8').split('\n').find((l) => / r-xp .*\/libc[.-][^/]*$/.test(l))!
  const libcPath = libc.slice(libc.indexOf('/'))
  object.subscribe('samples', () => {})
  const calls = Number(args.calls)
  let dropped = 0
  const sampling = (sampleBytes: number): Config => {
    let links: { detach(): void }[] = []
    return {
      on: () => {
        const value = new Uint8Array(ALLOC_STACKS_OPTIONS_SIZE)
        encodeAllocStacksOptions({ sample_bytes: sampleBytes }, new DataView(value.buffer), 0)
        object.map('options').update(u32(0), value)
        for (const [func, returns] of [['malloc', true], ['calloc', true], ['realloc', true], ['free', false]] as const) {
          links.push(object.attachUprobe(`${func}_enter`, libcPath, { symbol: func, retprobe: false, pid: loop.pid }))
          if (returns) links.push(object.attachUprobe(`${func}_exit`, libcPath, { symbol: func, retprobe: true, pid: loop.pid }))
        }
      },
      off: () => {
        for (const link of links) link.detach()
        links = []
        dropped = object.object.dropped()
      },
    }
  }
  try {
    const result = await alternate([object.object], ['malloc_enter', 'malloc_exit', 'free_enter'], calls, {
      none: { on: () => {}, off: () => {} },
      'sampled every 512 KiB': sampling(512 * 1024),
      'every allocation sampled': sampling(0),
    }, () => loop.ask(String(calls)))
    console.log('allocations: malloc(64) + free pairs; CPU time of the process')
    for (const [name, r] of Object.entries(result)) {
      const vs = name === 'none' ? 'baseline' : `+${(r.cpu - result.none.cpu).toFixed(0)} ns per pair; programs ${(r.bpfNsPerRun * r.runsPerOp).toFixed(0)} ns a pair (${r.runsPerOp.toFixed(1)} runs)`
      console.log(`  ${name.padEnd(28)} ${r.cpu.toFixed(0).padStart(7)} ns CPU/pair (wall ${r.wall.toFixed(0)})   ${vs}`)
    }
    console.log(`  samples the ring had no room for (every allocation sampled, the reader doing nothing else): ${dropped}`)
  } finally {
    await object.close()
    loop.stop()
  }
}

const stats = enableRunTimeStats()
try {
  await offCpu()
  await allocations()
} finally {
  stats.close()
}
