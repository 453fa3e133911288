/**
 * Runs a bpftrace one-liner the way `bpftrace -e` does, for `periscope -e` and the REPL:
 * "Attaching N probes...", BEGIN, the probes until `exit()` or until `signal` aborts (Ctrl-C),
 * END, then every map, in bpftrace's text or `-f json` form, written through `write`.
 *
 * Tracepoint probes come from the kernel through `capture.ts`; `interval` probes fire from a
 * timer in this process (bpftrace fires them in the kernel on one CPU, so `pid` and `comm` there
 * name whatever ran; here they name this process). uprobe and uretprobe probes come from the
 * kernel through `uprobes.ts`, profile probes (with their `ustack`/`kstack`) through `profile.ts`.
 *
 * Errors in the program throw `BpftraceErrors` before anything is attached; print them with
 * `.format(source)`.
 */
import { native } from '../../runtime/bpf/native.ts'
import type { AttachPoint } from './ast.ts'
import { captureTracepoints, expandTracepoint, type Capture } from './capture.ts'
import { Evaluator, type TraceEvent } from './evaluate.ts'
import { KernelCountingAggregator } from './kernel-count.ts'
import { compileProgram } from './program.ts'
import { tracefsFields, TRACEFS } from './tracefs.ts'
import { captureProfiles } from './profile.ts'
import { captureUprobes, expandUprobe, isUprobe } from './uprobes.ts'
import { exitJson, exitText, mapJson, mapText, printfJson } from '../printers.ts'

const CLOCK_BOOTTIME = 7

export interface RunOptions {
  /** receives everything bpftrace would print on stdout */
  write(text: string): void
  json?: boolean
  /** aborting it is Ctrl-C: END runs and the maps print */
  signal?: AbortSignal
  tracefsRoot?: string
}

function intervalMs(point: Extract<AttachPoint, { provider: 'interval' }>): number {
  switch (point.unit) {
    case 's': return point.value * 1000
    case 'ms': return point.value
    case 'us': return point.value / 1000
    case 'hz': return 1000 / point.value
  }
}

/** An event for probes that fire in this process (BEGIN, END, interval). */
function selfEvent(): TraceEvent {
  return { pid: process.pid, tid: process.pid, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, comm: 'periscope', cpu: 0, nsecs: native.clockGettime(CLOCK_BOOTTIME) }
}

export async function runOneLiner(source: string, options: RunOptions): Promise<void> {
  const root = options.tracefsRoot ?? TRACEFS
  const checked = compileProgram(source, { tracepointFields: tracefsFields(root) })
  const points = checked.program.probes.flatMap((probe) => probe.attachPoints)
  const attached = points.reduce((count, p) => count + (p.provider === 'tracepoint' ? expandTracepoint(p, root).length : isUprobe(p) ? expandUprobe(p).functions.length : 1), 0)

  const json = options.json ?? false
  // counting-only tracepoint probes count in the kernel, merged into it before any print
  const aggregator = new KernelCountingAggregator(checked.maps)
  let finish!: () => void
  const finished = new Promise<void>((resolve) => { finish = resolve })
  const evaluator = new Evaluator(checked, aggregator, {
    printf: (text) => options.write(json ? printfJson(text) : text),
    print: (map) => options.write(json ? mapJson(map) : mapText(map)),
    exit: finish,
  }, native.clockGettime(CLOCK_BOOTTIME))

  options.write(json ? `{"type": "attached_probes", "data": {"probes": ${attached}}}\n` : `Attaching ${attached} probe${attached === 1 ? '' : 's'}...\n`)
  const timers: NodeJS.Timeout[] = []
  let capture: Capture | undefined
  let uprobes: Capture | undefined
  let profiles: Capture | undefined
  const onAbort = () => finish()
  try {
    capture = await captureTracepoints(checked, (probe, event) => evaluator.fire(probe, event), root, aggregator)
    uprobes = await captureUprobes(checked, (probe, event) => evaluator.fire(probe, event))
    profiles = await captureProfiles(checked, (probe, event) => evaluator.fire(probe, event))
    checked.program.probes.forEach((probe, index) => {
      for (const point of probe.attachPoints) if (point.provider === 'interval') timers.push(setInterval(() => evaluator.fire(index, selfEvent()), intervalMs(point)))
    })
    evaluator.begin(selfEvent())
    if (evaluator.exited) finish()
    options.signal?.addEventListener('abort', onAbort, { once: true })
    if (options.signal?.aborted) finish()
    await finished
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
    for (const timer of timers) clearInterval(timer)
    const lost = (capture?.dropped() ?? 0) + (uprobes?.dropped() ?? 0) + (profiles?.dropped() ?? 0)
    capture?.close()
    uprobes?.close()
    profiles?.close()
    if (lost > 0) options.write(json ? `{"type": "lost_events", "data": {"events": ${lost}}}\n` : `Lost ${lost} events\n`)
  }
  evaluator.end(selfEvent())
  options.write(json ? exitJson(aggregator.snapshots()) : exitText(aggregator.snapshots()))
}
