/**
 * What the off-CPU and allocation profilers cost the processes they watch (issue 12), each against
 * a baseline measured in the same run, the configurations alternating round by round:
 * - off-CPU (bpf/lib/offcpu.bpf.o): two threads pinned to one CPU hand a byte back and forth over
 *   pipes (bench/switch-pingpong.c), a context switch at each hand-over. Without the object; with
 *   it watching another process (every switch of the host runs the program, which filters it
 *   out); with it watching the ping-pong (every switch records a block and a wakeup; all blocks
 *   are under the 1 ms threshold, as nearly all are on a busy host); and with no threshold (every
 *   block a sample, sent by a task work with its stack: what a long block costs). Added ns per
 *   context switch.
 * - allocations (bpf/lib/alloc_stacks.bpf.o): malloc(64) + free pairs (bench/malloc-loop.c)
 *   without the uprobes, with them sampling every 512 KiB on average (the plugin's default), and
 *   sampling every allocation. Added ns per malloc + free pair.
 * Medians over `--rounds` rounds. No target: the figures are reported in the README and the
 * plugins' docs.
 *
 *   node_modules/.bin/node bench/offcpu-alloc-overhead.bench.ts [--rounds 7] [--switch-rounds 100000] [--calls 300000]
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { encodeAllocStacksOptions, ALLOC_STACKS_OPTIONS_SIZE } from '../bpf/lib/alloc_stacks.types.ts'
import { encodeOffcpuOptions, OFFCPU_OPTIONS_SIZE } from '../bpf/lib/offcpu.types.ts'
import { attachTracepoint, attachTracing, type Link } from '../runtime/bpf/links.ts'
import { ObjectSpec } from '../runtime/bpf/object.ts'
import { RingBufferReader } from '../runtime/bpf/ringbuf.ts'
import { openLibraryObject } from '../runtime/library/index.ts'
import { objectPath } from '../test/bpf/kernel.ts'
import { buildTool, median } from './common.ts'

const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '7' }, 'switch-rounds': { type: 'string', default: '100000' }, calls: { type: 'string', default: '300000' } } })
const ROUNDS = Number(args.rounds)

const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer)

/** A long-lived tool that answers each number written to it with one line. */
function tool(name: string): { pid: number; ask: (line: string) => Promise<string>; stop: () => void } {
  const child: ChildProcessWithoutNullStreams = spawn(buildTool(name), [])
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  return {
    pid: child.pid!,
    ask: async (line) => {
      child.stdin.write(`${line}\n`)
      const answer = await lines.next()
      if (answer.done) throw new Error(`${name} exited`)
      return answer.value
    },
    stop: () => child.kill('SIGKILL'),
  }
}

/** Runs `measure` under each configuration, rotating their order each round; medians by configuration. */
async function alternate<C extends string>(configs: Record<C, { on: () => void | Promise<void>; off: () => void | Promise<void> }>, measure: () => Promise<number>): Promise<Record<C, number>> {
  const names = Object.keys(configs) as C[]
  const results = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<C, number[]>
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(round + i) % names.length]!
      await configs[name].on()
      try {
        await measure()
        results[name].push(await measure())
      } finally {
        await configs[name].off()
      }
    }
  }
  return Object.fromEntries(names.map((n) => [n, median(results[n])])) as Record<C, number>
}

async function offCpu(): Promise<void> {
  const pingpong = tool('switch-pingpong')
  const bystander = tool('malloc-loop')
  const object = await ObjectSpec.open(objectPath('offcpu')).load()
  const samples = new RingBufferReader(object, 'samples', { onBatch: () => {} })
  try {
    let switchesPerRound = 0
    const measure = async () => {
      const [ns, switches] = (await pingpong.ask(args['switch-rounds']!)).split(' ').map(Number)
      switchesPerRound = switches!
      return ns!
    }
    const watch = (pid: number, minBlockNs: number) => {
      let links: Link[] = []
      return {
        on: () => {
          const value = new Uint8Array(OFFCPU_OPTIONS_SIZE)
          encodeOffcpuOptions({ min_block_ns: minBlockNs, only_targets: 1, pad: 0 }, new DataView(value.buffer), 0)
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
    const result = await alternate({
      none: { on: () => {}, off: () => {} },
      'another process watched': watch(bystander.pid, 1e6),
      'this process, 1 ms threshold': watch(pingpong.pid, 1e6),
      'this process, every block sent': watch(pingpong.pid, 0),
    }, measure)
    console.log(`off-CPU: ${switchesPerRound.toFixed(2)} context switches per ping-pong round`)
    for (const [name, ns] of Object.entries(result)) {
      const added = (ns - result.none) / switchesPerRound
      console.log(`  ${name.padEnd(32)} ${ns.toFixed(0).padStart(6)} ns/round   ${name === 'none' ? 'baseline' : `${added >= 0 ? '+' : ''}${added.toFixed(0)} ns per context switch (${((ns / result.none - 1) * 100).toFixed(1)}%)`}`)
    }
  } finally {
    samples.close()
    object.close()
    pingpong.stop()
    bystander.stop()
  }
}

async function allocations(): Promise<void> {
  const loop = tool('malloc-loop')
  const object = await openLibraryObject('alloc_stacks', { log: () => {} })
  const libc = readFileSync(`/proc/${loop.pid}/maps`, 'utf8').split('\n').find((l) => / r-xp .*\/libc[.-][^/]*$/.test(l))!
  const libcPath = libc.slice(libc.indexOf('/'))
  let dropped = 0
  object.subscribe('samples', () => {})
  const sampling = (sampleBytes: number) => {
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
    const result = await alternate({
      none: { on: () => {}, off: () => {} },
      'sampled every 512 KiB': sampling(512 * 1024),
      'every allocation sampled': sampling(0),
    }, async () => Number(await loop.ask(args.calls!)))
    console.log('allocations: malloc(64) + free pairs')
    for (const [name, ns] of Object.entries(result)) {
      console.log(`  ${name.padEnd(32)} ${ns.toFixed(0).padStart(6)} ns/pair    ${name === 'none' ? 'baseline' : `+${(ns - result.none).toFixed(0)} ns per pair (x${(ns / result.none).toFixed(1)})`}`)
    }
    console.log(`  samples the ring had no room for, sampling every allocation: ${dropped}`)
  } finally {
    await object.close()
    loop.stop()
  }
}

await offCpu()
await allocations()
