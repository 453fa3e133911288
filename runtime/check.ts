/**
 * `periscope check`: what this kernel supports and what Periscope will use, in the spirit of
 * `bpftool feature probe` and `bpftrace --info`. Exits non-zero when Periscope cannot run here.
 */
import { existsSync, readFileSync } from 'node:fs'
import { release } from 'node:os'
import { attachKinds, probeAttach, probeBtf, probeHelper, probeMapType, probeProgramType, type FeatureResult } from './bpf/features.ts'
import { native } from './bpf/native.ts'
import { attachPlanFallbacks } from './library/catalogue.ts'
import { capabilityNames, threadCredentials } from './privileges.ts'

const mark = (r: FeatureResult): string => (r.status === 'supported' ? 'yes' : r.status === 'unsupported' ? 'no' : 'unknown')

function mounted(type: string, path: string): boolean {
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n')
  return mounts.some((line) => {
    const [, where, fsType] = line.split(' ')
    return where === path && fsType === type
  })
}

/** The capabilities that decide what Periscope can do, for the report's one line. */
const relevantCapabilities = new Set(['CAP_BPF', 'CAP_PERFMON', 'CAP_NET_ADMIN', 'CAP_DAC_READ_SEARCH', 'CAP_SYS_ADMIN', 'CAP_SETUID', 'CAP_SETGID'])

export async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json')
  const report: Record<string, unknown> = {}
  const lines: string[] = []
  const section = (title: string) => lines.push('', title)
  const row = (name: string, value: string) => lines.push(`  ${name.padEnd(34)} ${value}`)

  const btf = probeBtf()
  const caps = capabilityNames(threadCredentials().effective)
  const tracefs = mounted('tracefs', '/sys/kernel/tracing') || existsSync('/sys/kernel/tracing/events')
  const bpffs = mounted('bpf', '/sys/fs/bpf')
  report.system = { kernel: release(), btf: btf.status, tracefs, bpffs, capabilities: caps, node: process.versions.node, libbpf: native.versions().libbpf, cpus: native.versions().possibleCpus }
  section('System')
  row('kernel', release())
  row('BTF (/sys/kernel/btf/vmlinux)', mark(btf))
  row('tracefs (/sys/kernel/tracing)', tracefs ? 'mounted' : 'not mounted: mount -t tracefs tracefs /sys/kernel/tracing')
  row('bpffs (/sys/fs/bpf)', bpffs ? 'mounted' : 'not mounted: mount -t bpf bpf /sys/fs/bpf')
  const relevant = caps.filter((name) => relevantCapabilities.has(name))
  row('capabilities', `${relevant.join(', ') || 'none that matter'}${caps.length > relevant.length ? ` (+${caps.length - relevant.length} more)` : ''}`)
  row('node', process.versions.node)
  row('libbpf', native.versions().libbpf)

  section('Program types')
  const programTypes: Record<string, string> = {}
  for (const name of ['tracepoint', 'raw_tracepoint', 'tracing', 'kprobe', 'perf_event', 'cgroup_skb', 'sched_cls', 'syscall', 'lsm']) {
    const r = probeProgramType(name)
    programTypes[name] = r.status
    row(name, mark(r))
  }
  section('Map types')
  const mapTypes: Record<string, string> = {}
  for (const name of ['hash', 'array', 'percpu_hash', 'percpu_array', 'lru_hash', 'stack_trace', 'ringbuf', 'perf_event_array']) {
    const r = probeMapType(name)
    mapTypes[name] = r.status
    row(name, mark(r))
  }
  section('Helpers (in tracepoint programs)')
  const helpers: Record<string, string> = {}
  for (const name of ['ringbuf_reserve', 'get_attach_cookie', 'loop', 'get_stackid', 'probe_read_user'] as const) {
    const r = probeHelper('tracepoint', name)
    helpers[name] = r.status
    row(`bpf_${name}`, mark(r))
  }
  section('Attach (really loaded and attached)')
  const attach: Record<string, FeatureResult> = {}
  for (const kind of attachKinds) {
    const r = await probeAttach(kind)
    attach[kind] = r
    row(kind, r.status === 'supported' ? 'yes' : `${mark(r)}: ${r.reason.slice(0, 110)}`)
  }
  section('Attach plans (what Periscope uses here)')
  const plans = await attachPlanFallbacks()
  for (const plan of plans) row(plan.want, plan.use === undefined ? 'nothing available' : plan.use === plan.want ? plan.use : `${plan.use} (instead of ${plan.want})`)
  report.programTypes = programTypes
  report.mapTypes = mapTypes
  report.helpers = helpers
  report.attach = attach
  report.plans = plans

  const problems: string[] = []
  if (btf.status !== 'supported') problems.push('no kernel BTF: Periscope needs CONFIG_DEBUG_INFO_BTF=y')
  if (!tracefs) problems.push('tracefs is not mounted: mount -t tracefs tracefs /sys/kernel/tracing')
  if (attach.tracepoint.status !== 'supported') problems.push(`tracepoints cannot be attached: ${(attach.tracepoint as { reason: string }).reason}`)
  if (mapTypes.ringbuf !== 'supported' && mapTypes.perf_event_array !== 'supported') problems.push('neither ring buffers nor perf buffers are available')
  if (!caps.includes('CAP_BPF') && !caps.includes('CAP_SYS_ADMIN')) problems.push('no CAP_BPF: run as root, or grant CAP_BPF and CAP_PERFMON')
  report.ok = problems.length === 0
  report.problems = problems

  if (json) {
    console.log(JSON.stringify(report, null, 2))
  } else {
    console.log(lines.join('\n').trimStart())
    console.log('')
    console.log(problems.length === 0 ? 'Periscope can run here.' : `Periscope cannot run here:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
  }
  return problems.length === 0 ? 0 : 1
}
