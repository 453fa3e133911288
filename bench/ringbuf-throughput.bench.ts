/**
 * Ring buffer throughput (issue 2): Periscope's consumer (addon → one ArrayBuffer per batch → a
 * JS loop reading seq from each record) against a plain C libbpf consumer of the same ring
 * (ringbuf-consumer.c), alternating, several rounds in one run. The producer is a separate
 * process (loopgen-producer.c) on the other CPU, so only the consumer's own CPU time counts.
 *
 * Two phases, because a consumer's cost per event depends on how often it is woken:
 *  - live: the producer runs flat out while the consumer polls. A consumer that keeps up is
 *    woken for every few records (the kernel wakes it whenever it has caught up), so a faster
 *    consumer pays more wake-ups per event, and the wake-ups also slow the producer: this ratio
 *    rewards a slow consumer.
 *  - backlog: the producer fills the ring while the consumer is idle, then the consumer drains it
 *    in one go, and only the drain is timed. This is the cost per record with no wake-ups: C
 *    reads each record once in place, Periscope's addon walks the batch to find its committed end
 *    and count it, then JS walks it.
 * Both ratios are gated (PASS/FAIL, non-zero exit on a FAIL) at ≥ 0.5 of C. Both consumers are
 * warmed up before anything is timed: one unreported round of each per phase (JIT, page tables),
 * and in each backlog round one untimed drain (each C round is a fresh process). Figures are
 * events per consumer CPU-second and events/s wall, each also as a ratio against the C consumer
 * of the same run, and the backlog's nanoseconds per record.
 *
 *   node_modules/.bin/node bench/ringbuf-throughput.bench.ts
 */
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { forEachRecord } from '../runtime/bpf/batch.ts'
import { ObjectSpec, type LoadedObject } from '../runtime/bpf/object.ts'
import { RingBufferReader } from '../runtime/bpf/ringbuf.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const build = join(root, 'bench/build')

const ROUNDS = 5
const LIVE_MS = 2000
const LIVE_RECORDS_PER_RUN = 4096
// 200000 × (8-byte header + 64) bytes stays under the 16 MiB ring: a fill never drops
const BACKLOG_FILL = 200_000
const BACKLOG_FILLS = 20
// two CPUs here: the consumer under test gets one, the producer the other
const CONSUMER_CPU = 0
const PRODUCER_CPU = 1
const TARGET_RATIO = 0.5
const TARGET_JS_EVENTS_PER_SECOND = 2_000_000

type Phase = 'live' | 'backlog'
type Consumer = 'js' | 'c'

interface Round {
  phase: Phase
  consumer: Consumer
  /** records consumed in the timed window */
  events: number
  /** records consumed in all, warm-up drain included */
  consumed: number
  gaps: number
  cpuSeconds: number
  /** live: producer start to last record consumed; backlog: time spent draining */
  wallSeconds: number
  attempted: number
  dropped: number
}

interface Ids { mapId: number; progId: number }

/** Compiles a bench/*.c tool against Debian's libbpf when its binary is older than its sources. */
function buildTool(name: string): string {
  const source = join(root, `bench/${name}.c`)
  const output = join(build, name)
  const mtime = (path: string): number => (existsSync(path) ? statSync(path).mtimeMs : 0)
  if (mtime(output) < Math.max(mtime(source), mtime(join(root, 'bpf/lib/loopgen.h')))) {
    mkdirSync(build, { recursive: true })
    execFileSync('cc', ['-O2', '-Wall', source, '-lbpf', '-lelf', '-lz', '-o', output], { stdio: 'inherit' })
  }
  return output
}

/** The kernel's id of a BPF fd of this process, from its fdinfo (`prog_id:` or `map_id:`). */
function kernelId(fd: number, kind: 'prog' | 'map'): number {
  const match = new RegExp(`^${kind}_id:\\s*(\\d+)$`, 'm').exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))
  if (match === null) throw new Error(`fd ${fd} is not a BPF ${kind} (no ${kind}_id in /proc/self/fdinfo/${fd})`)
  return Number(match[1])
}

/** A child tool driven by lines on stdin, answering in JSON lines on stdout. */
class Tool {
  readonly path: string
  readonly child
  readonly exited: Promise<void>
  readonly #lines: AsyncIterator<string>

  constructor(path: string, args: (string | number)[]) {
    this.path = path
    this.child = spawn(path, args.map(String), { stdio: ['pipe', 'pipe', 'inherit'] })
    this.exited = new Promise<void>((resolve, reject) => {
      this.child.once('error', reject)
      this.child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${path} exited with ${code}`))))
    })
    this.#lines = createInterface({ input: this.child.stdout! })[Symbol.asyncIterator]()
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`)
  }

  async next<T>(): Promise<T> {
    const line = await this.#lines.next()
    if (line.done === true) throw new Error(`${this.path} ended without an answer`)
    return JSON.parse(line.value) as T
  }

  async finish<T>(): Promise<T> {
    this.child.stdin!.end()
    const result = await this.next<T>()
    await this.exited
    return result
  }
}

interface Produced { attempted: number; startNs: number; endNs: number }
interface CResult { events: number; gaps: number; cpuNs: number; lastEventNs: number }

/**
 * Every child process the benchmark needs is started before any measurement: a fork makes this
 * process's memory copy-on-write, and the JS consumer's next writes to it would fault.
 */
class Children {
  readonly producer: Tool
  readonly #consumers: Tool[] = []

  constructor(producer: Tool) {
    this.producer = producer
  }

  static async start(ids: Ids, consumer: string, producer: string, consumers: number): Promise<Children> {
    const children = new Children(new Tool(producer, [ids.progId, PRODUCER_CPU]))
    for (let i = 0; i < consumers; i++) {
      const phase: Phase = i < consumers / 2 ? 'live' : 'backlog'
      const tool = new Tool(consumer, [ids.mapId, CONSUMER_CPU, phase])
      await tool.next()
      children.#consumers.push(tool)
    }
    return children
  }

  /** The next idle C consumer; live ones come first. */
  consumer(): Tool {
    const tool = this.#consumers.shift()
    if (tool === undefined) throw new Error('no C consumer left; start more')
    return tool
  }

  /** Runs `generate` back to back for `ms` milliseconds (at least once) on the producer's CPU. */
  async produce(recordsPerRun: number, ms: number): Promise<Produced> {
    this.producer.send(`${recordsPerRun} ${ms}`)
    return this.producer.next<Produced>()
  }

  async close(): Promise<void> {
    this.producer.child.stdin!.end()
    await this.producer.exited
  }
}

/** Periscope's consumer in this process: the records of each batch, seq checked in JS. */
function jsConsumer(object: LoadedObject, seqOffset: number) {
  const tally = { events: 0, gaps: 0, nextSeq: 0, lastEventNs: 0n }
  // created once, not per batch, as forEachRecord advises for a hot path
  const onRecord = (view: DataView, offset: number): void => {
    const seq = view.getUint32(offset + seqOffset, true) + view.getUint32(offset + seqOffset + 4, true) * 2 ** 32
    // the first record of a round sets the expected sequence
    if (tally.events !== 0 && seq !== tally.nextSeq) tally.gaps++
    tally.nextSeq = seq + 1
    tally.events++
  }
  const reader = new RingBufferReader(object, 'events', {
    onBatch(batch) {
      forEachRecord(batch, onRecord)
      tally.lastEventNs = process.hrtime.bigint()
    },
  })
  return { reader, tally }
}

const cpuSecondsSince = (before: NodeJS.CpuUsage): number => {
  const used = process.cpuUsage(before)
  return (used.user + used.system) / 1e6
}

async function jsLive(object: LoadedObject, seqOffset: number, children: Children): Promise<Round> {
  const { reader, tally } = jsConsumer(object, seqOffset)
  const droppedBefore = object.dropped()
  const cpuBefore = process.cpuUsage()
  const produced = await children.produce(LIVE_RECORDS_PER_RUN, LIVE_MS)
  // what the producer wrote just before it finished
  reader.drain()
  const cpuSeconds = cpuSecondsSince(cpuBefore)
  reader.close()
  return {
    phase: 'live', consumer: 'js', events: tally.events, consumed: tally.events, gaps: tally.gaps, cpuSeconds,
    wallSeconds: (Math.max(Number(tally.lastEventNs), produced.endNs) - produced.startNs) / 1e9,
    attempted: produced.attempted, dropped: object.dropped() - droppedBefore,
  }
}

async function cLive(object: LoadedObject, children: Children): Promise<Round> {
  const consumer = children.consumer()
  const droppedBefore = object.dropped()
  consumer.send('start')
  const produced = await children.produce(LIVE_RECORDS_PER_RUN, LIVE_MS)
  consumer.child.kill('SIGUSR1')
  const result = await consumer.finish<CResult>()
  return {
    phase: 'live', consumer: 'c', events: result.events, consumed: result.events, gaps: result.gaps, cpuSeconds: result.cpuNs / 1e9,
    wallSeconds: (Math.max(result.lastEventNs, produced.endNs) - produced.startNs) / 1e9,
    attempted: produced.attempted, dropped: object.dropped() - droppedBefore,
  }
}

async function jsBacklog(object: LoadedObject, seqOffset: number, children: Children): Promise<Round> {
  const { reader, tally } = jsConsumer(object, seqOffset)
  // no delivery from the event loop while the producer fills the ring: only drain() consumes
  reader.pause()
  const droppedBefore = object.dropped()
  // untimed, like the C consumer's "warm" drain
  let attempted = (await children.produce(BACKLOG_FILL, 0)).attempted
  reader.drain()
  const warmEvents = tally.events
  let cpuSeconds = 0
  let wallNs = 0n
  for (let i = 0; i < BACKLOG_FILLS; i++) {
    attempted += (await children.produce(BACKLOG_FILL, 0)).attempted
    const cpuBefore = process.cpuUsage()
    const start = process.hrtime.bigint()
    reader.drain()
    wallNs += process.hrtime.bigint() - start
    cpuSeconds += cpuSecondsSince(cpuBefore)
  }
  reader.close()
  return {
    phase: 'backlog', consumer: 'js', events: tally.events - warmEvents, consumed: tally.events, gaps: tally.gaps, cpuSeconds,
    wallSeconds: Number(wallNs) / 1e9, attempted, dropped: object.dropped() - droppedBefore,
  }
}

async function cBacklog(object: LoadedObject, children: Children): Promise<Round> {
  const consumer = children.consumer()
  const droppedBefore = object.dropped()
  let attempted = (await children.produce(BACKLOG_FILL, 0)).attempted
  consumer.send('warm')
  const warmEvents = (await consumer.next<{ events: number }>()).events
  let wallNs = 0
  for (let i = 0; i < BACKLOG_FILLS; i++) {
    attempted += (await children.produce(BACKLOG_FILL, 0)).attempted
    consumer.send('drain')
    wallNs += (await consumer.next<{ events: number; wallNs: number }>()).wallNs
  }
  const result = await consumer.finish<CResult>()
  return {
    phase: 'backlog', consumer: 'c', events: result.events - warmEvents, consumed: result.events, gaps: result.gaps, cpuSeconds: result.cpuNs / 1e9,
    wallSeconds: wallNs / 1e9, attempted, dropped: object.dropped() - droppedBefore,
  }
}

const perCpuSecond = (r: Round): number => r.events / r.cpuSeconds
const perWallSecond = (r: Round): number => r.events / r.wallSeconds
const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
const millions = (value: number): string => `${(value / 1e6).toFixed(2)}M`
const row = (cells: (string | number)[]): string =>
  cells.map((cell, i) => (i === 0 ? String(cell).padEnd(12) : String(cell).padStart(11))).join(' ')

async function main(): Promise<void> {
  const consumer = buildTool('ringbuf-consumer')
  const producer = buildTool('loopgen-producer')
  // every thread of this process (main, libuv, V8 helpers) shares the consumer's CPU, as the C
  // consumer's single thread does; the producer has the other CPU to itself
  execFileSync('taskset', ['-a', '-p', '-c', String(CONSUMER_CPU), String(process.pid)], { stdio: 'ignore' })

  const object = await ObjectSpec.open(join(root, 'bpf/lib/loopgen.bpf.o')).load()
  try {
    // the record layout comes from the object's BTF, not a hand-written offset
    const event = object.btf.byName('struct', 'loopgen_event')
    const layout = event === undefined ? undefined : object.btf.layout(event.id)
    const seqOffset = layout?.kind === 'struct' ? layout.fields.find((f) => f.name === 'seq')?.offset : undefined
    if (seqOffset === undefined) throw new Error('loopgen.bpf.o has no struct loopgen_event with a seq field; rebuild bpf/lib')
    const ids: Ids = {
      mapId: kernelId(object.map('events').info.fd, 'map'),
      progId: kernelId(object.program('generate').fd(), 'prog'),
    }
    // one C consumer per live and backlog round, warm-up included
    const children = await Children.start(ids, consumer, producer, 2 * (ROUNDS + 1))
    const runs: Record<Phase, Record<Consumer, () => Promise<Round>>> = {
      live: { js: () => jsLive(object, seqOffset, children), c: () => cLive(object, children) },
      backlog: { js: () => jsBacklog(object, seqOffset, children), c: () => cBacklog(object, children) },
    }
    const run = async (phase: Phase, which: Consumer, label: string): Promise<Round> => {
      const r = await runs[phase][which]()
      if (r.consumed + r.dropped !== r.attempted) {
        throw new Error(`${label}: ${r.attempted} records attempted, ${r.dropped} dropped, but ${r.consumed} consumed`)
      }
      return r
    }

    console.log(`ring buffer throughput, 64-byte records; consumer on CPU ${CONSUMER_CPU}, producer on CPU ${PRODUCER_CPU}`)
    console.log(`live: ${LIVE_MS} ms of ${LIVE_RECORDS_PER_RUN}-record test runs per round; ` +
      `backlog: ${BACKLOG_FILLS} fills of ${BACKLOG_FILL} records per round, each drained at once\n`)
    console.log(row(['round', 'events', 'cpu s', 'ev/cpu-s', 'wall s', 'ev/s wall', 'dropped', 'seq gaps']))
    const rounds: Round[] = []
    for (const phase of ['live', 'backlog'] as const) {
      // unreported: JIT warm-up, and the copy-on-write faults left by starting the children
      await run(phase, 'c', `${phase} warm-up C`)
      await run(phase, 'js', `${phase} warm-up JS`)
      for (let i = 0; i < ROUNDS; i++) {
        // alternate which goes first, so neither always runs on a warmer or colder machine
        for (const which of i % 2 === 0 ? (['c', 'js'] as const) : (['js', 'c'] as const)) {
          const label = `${phase} ${i + 1} ${which.toUpperCase()}`
          const r = await run(phase, which, label)
          rounds.push(r)
          console.log(row([label, r.events, r.cpuSeconds.toFixed(3), millions(perCpuSecond(r)),
            r.wallSeconds.toFixed(3), millions(perWallSecond(r)), r.dropped, r.gaps]))
        }
      }
    }
    await children.close()

    const summary = (phase: Phase, which: Consumer) => {
      const of = rounds.filter((r) => r.phase === phase && r.consumer === which)
      return {
        cpu: median(of.map(perCpuSecond)),
        wall: median(of.map(perWallSecond)),
        dropped: of.reduce((sum, r) => sum + r.dropped, 0),
      }
    }
    console.log(`\nmedians over ${ROUNDS} rounds, with ratios against the C consumer of the same phase:`)
    console.log(row(['consumer', 'ev/cpu-s', 'ratio', 'ev/s wall', 'ratio', 'dropped']))
    const ratios: Record<Phase, number> = { live: 0, backlog: 0 }
    for (const phase of ['live', 'backlog'] as const) {
      const c = summary(phase, 'c')
      const js = summary(phase, 'js')
      ratios[phase] = js.cpu / c.cpu
      console.log(row([`${phase} C`, millions(c.cpu), '1.00', millions(c.wall), '1.00', c.dropped]))
      console.log(row([`${phase} JS`, millions(js.cpu), (js.cpu / c.cpu).toFixed(2), millions(js.wall), (js.wall / c.wall).toFixed(2), js.dropped]))
    }

    const jsDelivered = summary('live', 'js').wall
    const gaps = rounds.reduce((sum, r) => sum + r.gaps, 0)
    const nsPerRecord = (which: Consumer): string => `${(1e9 / summary('backlog', which).cpu).toFixed(1)} ns`
    const checks = [
      { label: 'JS/C events per consumer CPU-second, live', value: ratios.live.toFixed(3), target: `≥ ${TARGET_RATIO}`, pass: ratios.live >= TARGET_RATIO },
      {
        label: 'JS/C events per consumer CPU-second, backlog drain (per record, no wake-ups)',
        value: `${ratios.backlog.toFixed(3)} (JS ${nsPerRecord('js')} per record, C ${nsPerRecord('c')})`,
        target: `≥ ${TARGET_RATIO}`, pass: ratios.backlog >= TARGET_RATIO,
      },
      { label: 'events/s delivered into JS, live', value: millions(jsDelivered), target: `≥ ${millions(TARGET_JS_EVENTS_PER_SECOND)}`, pass: jsDelivered >= TARGET_JS_EVENTS_PER_SECOND },
      { label: 'sequence gaps (records reordered or lost)', value: String(gaps), target: '= 0', pass: gaps === 0 },
    ]
    console.log('')
    for (const check of checks) console.log(`${check.pass ? 'PASS' : 'FAIL'}  ${check.label}: ${check.value} (target ${check.target})`)
    if (checks.some((check) => !check.pass)) process.exitCode = 1
  } finally {
    object.close()
  }
}

await main()
