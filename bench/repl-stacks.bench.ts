/**
 * What `kstack` and `ustack` cost a one-liner's tracepoint probe per event (issue 13), beside the
 * same probe without stacks: the load (bench/paced-syscalls.c) calls getppid() at a set rate for
 * `--seconds`, and `tracepoint:syscalls:sys_enter_getppid /pid == LOAD && args->__syscall_nr == 110/`
 * (a filter the kernel cannot apply whole, so each call is a record, as a stack key needs) counts
 * them under no key, `kstack`, `ustack`, or both, run in this process through runOneLiner.
 *
 * - kernel: the generic program's run time per event (the kernel's BPF run-time stats, on for the
 *   bench), which the traced thread pays in each call;
 * - reader: this process's CPU time per event (decoding, unwinding the user stack with .eh_frame,
 *   naming both stacks, counting), from release of the load until the one-liner has printed;
 * - bytes: ring buffer bytes per record; lost: records the ring could not take.
 *
 *   node_modules/.bin/node bench/repl-stacks.bench.ts [--seconds 2] [--rates 10000,50000]
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { enableRunTimeStats } from '../runtime/bpf/stats.ts'
import { runOneLiner } from '../repl/bpftrace/run.ts'
import { buildTool, waitFor } from './common.ts'

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '2' },
    rates: { type: 'string', default: '10000,50000' },
  },
})
const SECONDS = Number(args.seconds)
const RATES = args.rates.split(',').map(Number)
const loadTool = buildTool('paced-syscalls')

const variants = {
  'no stacks': '@ = count()',
  kstack: '@[kstack] = count()',
  ustack: '@[ustack] = count()',
  'kstack and ustack': '@[kstack, ustack] = count()',
} satisfies Record<string, string>

/** Run time and runs of the BPF programs this process holds, summed (only the one-liner's are loaded). */
function programRuns(): { ns: number; runs: number } {
  let ns = 0, runs = 0
  for (const fd of readdirSync('/proc/self/fdinfo')) {
    let info: string
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8')
    } catch {
      continue
    }
    const time = /^run_time_ns:\s*(\d+)$/m.exec(info)
    if (time === null) continue
    ns += Number(time[1])
    runs += Number(/^run_cnt:\s*(\d+)$/m.exec(info)?.[1] ?? 0)
  }
  return { ns, runs }
}

/** The sum of a printed map's counts. */
const counted = (output: string): number => [...output.matchAll(/(?:^@\w*|\]): (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0)

async function measure(statement: string, rate: number) {
  const load = spawn(loadTool, [String(rate), String(SECONDS * 1000)], { stdio: ['pipe', 'pipe', 'inherit'] })
  let loadOut = ''
  load.stdout.setEncoding('utf8').on('data', (chunk: string) => { loadOut += chunk })
  const loadExited = once(load, 'exit')
  const abort = new AbortController()
  let output = ''
  try {
    const run = runOneLiner(`BEGIN { printf("ready\\n"); } tracepoint:syscalls:sys_enter_getppid /pid == ${load.pid} && args->__syscall_nr == 110/ { ${statement}; }`,
      { write: (text) => { output += text }, signal: abort.signal })
    await waitFor(() => output.includes('ready\n'), 'the one-liner attaching', 60_000)
    const runsBefore = programRuns()
    const cpuBefore = process.cpuUsage()
    load.stdin.end('go\n')
    await loadExited
    const made = JSON.parse(loadOut) as { calls: number; wallNs: number }
    const runsAfter = programRuns()
    abort.abort()
    await run
    const cpu = process.cpuUsage(cpuBefore)
    const events = runsAfter.runs - runsBefore.runs
    const lost = Number(/^Lost (\d+) events$/m.exec(output)?.[1] ?? 0)
    return {
      calls: made.calls,
      counted: counted(output.slice(output.indexOf('\n\n'))),
      lost,
      kernelNs: (runsAfter.ns - runsBefore.ns) / events,
      readerNs: ((cpu.user + cpu.system) * 1000) / Math.max(1, made.calls - lost),
    }
  } finally {
    abort.abort()
    load.kill('SIGKILL')
  }
}

const stats = enableRunTimeStats()
try {
  for (const rate of RATES) {
    console.log(`\n${rate.toLocaleString('en')} getppid/s for ${SECONDS} s`)
    console.log('variant              calls   counted   lost   kernel ns/event   reader ns/event')
    for (const [name, statement] of Object.entries(variants)) {
      const r = await measure(statement, rate)
      console.log(`${name.padEnd(18)} ${String(r.calls).padStart(7)} ${String(r.counted).padStart(9)} ${String(r.lost).padStart(6)} ${r.kernelNs.toFixed(0).padStart(17)} ${r.readerNs.toFixed(0).padStart(17)}`)
    }
  }
} finally {
  stats.close()
}
