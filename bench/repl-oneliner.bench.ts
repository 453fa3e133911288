/**
 * `periscope -e` beside Debian's `bpftrace -e` (issue 13), each started as a user starts it (a
 * fresh `./periscope` from a shell: its setup check, Node's start, the compile cache), on the
 * same load:
 *
 * - Time to the first event: from spawning the tracer to the first line a probe printed, with
 *   a load calling getppid() 1,000 times a second (bench/paced-syscalls.c), for
 *   `tracepoint:syscalls:sys_enter_getppid /pid == LOAD/ { printf(...); exit(); }`. Target: under
 *   500 ms for periscope. Tracers alternate, in a rotating order, over `--rounds`; medians.
 * - Throughput: two counting one-liners on raw_syscalls:sys_enter while the load makes getppid()
 *   calls at rising rates for `--seconds` each. `/pid == LOAD && args->id == 110/ { @ = count(); }`
 *   (110: getppid) has a filter Periscope runs in user space, so each of the load's system calls
 *   crosses the ring buffer; `/pid == LOAD/ { @[args->id] = count(); }` Periscope counts in the
 *   kernel, as bpftrace counts both (generic.bpf.c's counting slots), and `@[110]` is read. A
 *   tracer keeps up at a rate when it reports no lost events and counts exactly the calls the
 *   load made; what it costs the load shows as the rate the load reaches under it.
 * Ratios are periscope / bpftrace.
 *
 *   node_modules/.bin/node bench/repl-oneliner.bench.ts [--rounds 5] [--seconds 2] [--rates 50000,100000,...]
 *   npm run bench -- repl-oneliner
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import type { Readable, Writable } from 'node:stream'
import { parseArgs } from 'node:util'
import { buildTool, median, repoRoot, verdict, waitFor } from './common.ts'

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '2' },
    rates: { type: 'string', default: '50000,100000,200000,400000,800000,1600000' },
  },
})
const ROUNDS = Number(args.rounds)
const SECONDS = Number(args.seconds)
const RATES = args.rates.split(',').map(Number)
const FIRST_EVENT_TARGET_MS = 500

const loadTool = buildTool('paced-syscalls')
/** How each tracer starts: `periscope-cli` is ./periscope without its setup check (scripts/setup.sh), to say what that costs. */
const tracers = {
  periscope: (program: string) => [path.join(repoRoot, 'periscope'), ['-e', program]],
  'periscope-cli': (program: string) => ['bash', ['-c', '. "$1" && exec "$2" "${periscope_node_flags[@]}" "$3" -e "$4"', 'periscope-cli', path.join(repoRoot, 'scripts/node-env.sh'), process.execPath, path.join(repoRoot, 'runtime/cli.ts'), program]],
  bpftrace: (program: string) => ['bpftrace', ['-e', program]],
} satisfies Record<string, (program: string) => [string, string[]]>
type Tracer = keyof typeof tracers

/** The load, held on stdin until released; `result` is what it made once it exits. */
function startLoad(rate: number, milliseconds: number) {
  const child: ChildProcessByStdio<Writable, Readable, null> = spawn(loadTool, [String(rate), String(milliseconds)], { stdio: ['pipe', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  const exited = once(child, 'exit')
  return {
    pid: child.pid!,
    release: () => child.stdin.end('go\n'),
    result: async (): Promise<{ calls: number; wallNs: number }> => {
      await exited
      return JSON.parse(stdout) as { calls: number; wallNs: number }
    },
    kill: () => child.kill('SIGKILL'),
  }
}

function startTracer(tracer: Tracer, program: string) {
  const [command, commandArgs] = tracers[tracer](program)
  const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const exited = once(child, 'exit')
  return {
    child,
    stdout: () => stdout,
    finished: async () => {
      const [code] = await exited
      if (code !== 0) throw new Error(`${tracer} -e '${program}' exited with ${code}: ${stderr}`)
      return stdout
    },
    kill: () => child.kill('SIGKILL'),
  }
}

async function timeToFirstEvent(tracer: Tracer, loadPid: number): Promise<number> {
  const started = performance.now()
  const run = startTracer(tracer, `tracepoint:syscalls:sys_enter_getppid /pid == ${loadPid}/ { printf("first event %d\\n", pid); exit(); }`)
  try {
    await waitFor(() => run.stdout().includes('first event') || run.child.exitCode !== null, `${tracer}'s first event`, 60_000)
    const elapsed = performance.now() - started
    await run.finished()
    return elapsed
  } finally {
    run.kill()
  }
}

interface Throughput { reached: number; counted: number; lost: number; calls: number }

/** The counting one-liners: the probe, and how its output says the getppid() count. */
const countings = {
  'user-space filter': { probe: (pid: number) => `/pid == ${pid} && args->id == 110/ { @ = count(); }`, counted: /^@: (\d+)$/m },
  'counted in the kernel': { probe: (pid: number) => `/pid == ${pid}/ { @[args->id] = count(); }`, counted: /^@\[110\]: (\d+)$/m },
}
type Counting = keyof typeof countings

/** One tracer counting the load's getppid() calls at `rate`. */
async function countAt(tracer: Tracer, counting: Counting, rate: number): Promise<Throughput> {
  const load = startLoad(rate, SECONDS * 1000)
  const run = startTracer(tracer, `BEGIN { printf("ready\\n"); } tracepoint:raw_syscalls:sys_enter ${countings[counting].probe(load.pid)} tracepoint:sched:sched_process_exit /pid == ${load.pid}/ { exit(); }`)
  try {
    await waitFor(() => run.stdout().includes('ready') || run.child.exitCode !== null, `${tracer} attaching`, 60_000)
    load.release()
    const made = await load.result()
    const output = await run.finished()
    return {
      reached: made.calls / (made.wallNs / 1e9),
      counted: Number(countings[counting].counted.exec(output)?.[1] ?? 0),
      lost: Number(/^Lost (\d+) events$/m.exec(output)?.[1] ?? 0),
      calls: made.calls,
    }
  } finally {
    load.kill()
    run.kill()
  }
}

const rate = (perSecond: number) => (perSecond >= 1e6 ? `${(perSecond / 1e6).toFixed(2)}M/s` : `${(perSecond / 1e3).toFixed(0)}k/s`)

console.log('time from start to the first printed event (load: 1,000 getppid/s)')
const load = startLoad(1000, 3_600_000)
load.release()
const firsts: Record<Tracer, number[]> = { periscope: [], 'periscope-cli': [], bpftrace: [] }
const names = Object.keys(tracers) as Tracer[]
try {
  for (let round = 0; round < ROUNDS; round++) {
    // a rotating order: no tracer always runs first, right after another's exit
    for (let i = 0; i < names.length; i++) {
      const tracer = names[(round + i) % names.length]
      firsts[tracer].push(await timeToFirstEvent(tracer, load.pid))
    }
  }
} finally {
  load.kill()
}
const first = Object.fromEntries(names.map((tracer) => [tracer, median(firsts[tracer])])) as Record<Tracer, number>
const labels: Record<Tracer, string> = { periscope: './periscope -e', 'periscope-cli': '  without setup check', bpftrace: 'bpftrace -e' }
for (const tracer of names) {
  const ratio = tracer === 'bpftrace' ? '' : `  ${(first[tracer] / first.bpftrace).toFixed(2)}x bpftrace`
  console.log(`  ${labels[tracer].padEnd(22)} ${first[tracer].toFixed(0).padStart(5)} ms${ratio}  (rounds: ${firsts[tracer].map((t) => t.toFixed(0)).join(', ')})`)
}
console.log(`  ./periscope -e under ${FIRST_EVENT_TARGET_MS} ms: ${verdict(first.periscope < FIRST_EVENT_TARGET_MS)}`)

for (const counting of Object.keys(countings) as Counting[]) {
  console.log(`\ncounting raw_syscalls:sys_enter of a getppid() load (${counting}: ${countings[counting].probe(0).replace('== 0', '== LOAD')}), ${SECONDS} s a rate`)
  const keptUp = { periscope: 0, bpftrace: 0 }
  const failed = { periscope: false, bpftrace: false }
  console.log('  asked       periscope: reached  counted/calls  lost     bpftrace: reached  counted/calls  lost')
  for (const asked of RATES) {
    const cells: string[] = []
    for (const tracer of ['periscope', 'bpftrace'] as const) {
      if (failed[tracer]) {
        cells.push(''.padEnd(40))
        continue
      }
      const result = await countAt(tracer, counting, asked)
      const exact = result.lost === 0 && result.counted === result.calls
      if (exact) keptUp[tracer] = Math.max(keptUp[tracer], result.reached)
      else failed[tracer] = true
      cells.push(`${rate(result.reached).padStart(17)}  ${`${result.counted}/${result.calls}`.padStart(15)}  ${String(result.lost).padStart(6)}`)
    }
    console.log(`  ${rate(asked).padEnd(9)} ${cells.join('  ')}`)
    if (failed.periscope && failed.bpftrace) break
  }
  const more = (tracer: 'periscope' | 'bpftrace') => (failed[tracer] ? '' : ' (or more)')
  console.log(`  highest rate counted exactly: periscope ${rate(keptUp.periscope)}${more('periscope')}, bpftrace ${rate(keptUp.bpftrace)}${more('bpftrace')}; ratio ${(keptUp.periscope / keptUp.bpftrace).toFixed(2)}x`)
}
if (first.periscope >= FIRST_EVENT_TARGET_MS) process.exitCode = 1
