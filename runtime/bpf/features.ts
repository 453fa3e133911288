/**
 * Feature probes with cilium/ebpf's semantics: each answers supported, unsupported (with the
 * error that proves it) or failed (the probe itself could not tell, e.g. it lacked a capability).
 * Only conclusive answers are cached. Attach kinds are probed by really loading and attaching
 * a tiny program from bpf/lib/probes.bpf.o, since a kernel can know a program type yet refuse it.
 * Each attach probe leaves the host as it found it: cgroup programs attach to a cgroup the probe
 * creates and removes, tc classifiers to the `lo` of a network namespace that exists only for
 * the probe.
 */
import { existsSync, mkdirSync, rmdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { capabilitiesForProgramType, probeLacks, type CapabilityName } from '../privileges.ts'
import { BpfError } from './errors.ts'
import { native } from './native.ts'
import { ObjectSpec, type LoadedObject } from './object.ts'
import { attachCgroup, cgroup2Root, attachKprobe, attachPerfEvent, attachRawTracepoint, attachTc, attachTracepoint, attachTracing, attachUprobe, attachUprobeMulti, UPROBE_MULTI_ATTACH_TYPE, type Link } from './links.ts'

export type FeatureResult =
  | { status: 'supported' }
  | { status: 'unsupported'; reason: string }
  | { status: 'failed'; reason: string }

const cache = new Map<string, FeatureResult>()

function cached(key: string, probe: () => FeatureResult): FeatureResult {
  const hit = cache.get(key)
  if (hit !== undefined) return hit
  const result = probe()
  if (result.status !== 'failed') cache.set(key, result)
  return result
}

/**
 * Errors that prove the kernel lacks a feature, as opposed to the probe failing. An EPERM proves
 * it only when the probe held every capability it needs: then it is the kernel's policy
 * (lockdown, an LSM, a disabled attach type); otherwise it is the missing capability.
 */
function classify(error: unknown, what: string, needs: readonly CapabilityName[]): FeatureResult {
  const reason = error instanceof Error ? error.message.split('\n')[0] : String(error)
  if (!(error instanceof BpfError)) return { status: 'failed', reason }
  if (error.code === 'EPERM') {
    const lacks = probeLacks(what, needs)
    return lacks === undefined ? { status: 'unsupported', reason } : { status: 'failed', reason: `${lacks} (${reason})` }
  }
  if (['ENOENT', 'EINVAL', 'ENOTSUPP', 'EOPNOTSUPP', 'E2BIG', 'ENOSYS', 'ENODEV', 'EACCES'].includes(error.code)) return { status: 'unsupported', reason }
  return { status: 'failed', reason }
}

function answer(value: boolean | BpfError, what: string): FeatureResult {
  if (value instanceof BpfError) return { status: 'failed', reason: `${what}: ${value.message}` }
  return value ? { status: 'supported' } : { status: 'unsupported', reason: `${what} is not supported by this kernel` }
}

export function probeProgramType(name: string): FeatureResult {
  const type = native.progTypeNames.indexOf(name)
  if (type < 0) return { status: 'unsupported', reason: `libbpf ${native.versions().libbpf} does not know program type ${name}` }
  return cached(`prog:${name}`, () => answer(native.probeProgType(type), `program type ${name}`))
}

export function probeMapType(name: string): FeatureResult {
  const type = native.mapTypeNames.indexOf(name)
  if (type < 0) return { status: 'unsupported', reason: `libbpf ${native.versions().libbpf} does not know map type ${name}` }
  return cached(`map:${name}`, () => answer(native.probeMapType(type), `map type ${name}`))
}

/** Helper ids from include/uapi/linux/bpf.h for the helpers Periscope's objects rely on. */
export const helperIds = {
  probe_read_kernel: 113, probe_read_user: 112, get_stackid: 27, ringbuf_output: 130, ringbuf_reserve: 131,
  ktime_get_boot_ns: 125, get_attach_cookie: 174, loop: 181, get_current_task_btf: 158,
} as const

export function probeHelper(programType: string, helper: keyof typeof helperIds): FeatureResult {
  const type = native.progTypeNames.indexOf(programType)
  return cached(`helper:${programType}:${helper}`, () => answer(native.probeHelper(type, helperIds[helper]), `helper bpf_${helper} in ${programType} programs`))
}

export const attachKinds = ['kprobe', 'fentry', 'tp_btf', 'raw_tp', 'tracepoint', 'uprobe', 'uprobe_multi', 'perf_event', 'cgroup_skb', 'tc'] as const
export type AttachKind = (typeof attachKinds)[number]

const probesObject = fileURLToPath(new URL('../../bpf/lib/probes.bpf.o', import.meta.url))

/** The program type (libbpf's name) of each probe program in probes.bpf.c. */
const probeProgramTypes: Record<AttachKind, string> = {
  kprobe: 'kprobe', fentry: 'tracing', tp_btf: 'tracing', raw_tp: 'raw_tracepoint', tracepoint: 'tracepoint',
  uprobe: 'kprobe', uprobe_multi: 'kprobe', perf_event: 'perf_event', cgroup_skb: 'cgroup_skb', tc: 'sched_cls',
}

/** What each probe program needs set before load, beyond its section name. */
const probePreparations: Partial<Record<AttachKind, (spec: ObjectSpec, program: string) => void>> = {
  uprobe_multi: (spec, program) => spec.setExpectedAttachType(program, UPROBE_MULTI_ATTACH_TYPE),
}

/** What each attach probe needs beyond loading: tc creates a network namespace (CAP_SYS_ADMIN). */
const probeExtraNeeds: Partial<Record<AttachKind, CapabilityName[]>> = { tc: ['CAP_SYS_ADMIN'] }

/** A cgroup that exists only while `fn` runs, so no program ever attaches to one the host uses. */
function inProbeCgroup<T>(fn: (cgroup: string) => T): T {
  const root = cgroup2Root()
  if (root === undefined) throw new BpfError('no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup)', { op: 'cgroup2Root', errno: 2, code: 'ENOENT' })
  const cgroup = `${root}/periscope-probe-${process.pid}`
  mkdirSync(cgroup)
  try {
    return fn(cgroup)
  } finally {
    rmdirSync(cgroup)
  }
}

/** Attaches and detaches the probe program of one kind; throws what the kernel said. */
const attachAndDetach: Record<AttachKind, (object: LoadedObject) => void> = {
  kprobe: (o) => detachAll([attachKprobe(o, 'probe_kprobe', 'do_unlinkat')]),
  fentry: (o) => detachAll([attachTracing(o, 'probe_fentry')]),
  tp_btf: (o) => detachAll([attachTracing(o, 'probe_tp_btf')]),
  raw_tp: (o) => detachAll([attachRawTracepoint(o, 'probe_raw_tp', 'sched_process_fork')]),
  tracepoint: (o) => detachAll([attachTracepoint(o, 'probe_tracepoint', 'sched', 'sched_process_fork')]),
  // the node binary exports libuv, so uv_version is a symbol every Periscope process can probe
  uprobe: (o) => detachAll([attachUprobe(o, 'probe_uprobe', process.execPath, { symbol: 'uv_version', pid: process.pid })]),
  uprobe_multi: (o) => detachAll([attachUprobeMulti(o, 'probe_uprobe_multi', process.execPath, { symbol: 'uv_version', pid: process.pid })]),
  perf_event: (o) => detachAll(attachPerfEvent(o, 'probe_perf_event', { frequency: 1, cpus: [0] })),
  cgroup_skb: (o) => inProbeCgroup((cgroup) => detachAll([attachCgroup(o, 'probe_cgroup_skb', cgroup)])),
  // lo is ifindex 1 in every namespace; detaching must happen in the namespace too
  tc: (o) => native.withFreshNetworkNamespace(() => detachAll([attachTc(o, 'probe_tc', 'lo', { direction: 'ingress' })])),
}

function detachAll(links: Link[]): void {
  for (const link of links) link.detach()
}

function whyUnsupported(kind: AttachKind, error: unknown): string {
  const code = error instanceof BpfError ? error.code : 'error'
  if (kind === 'kprobe' && !existsSync('/sys/bus/event_source/devices/kprobe')) return `kprobes are not available on this kernel (no kprobe PMU, CONFIG_KPROBES off): ${code}`
  if (kind === 'uprobe_multi' && code === 'EINVAL') return 'uprobe_multi links need Linux 6.6 with CONFIG_UPROBES (EINVAL); run-time uprobes then go through the uprobe PMU, which needs CAP_SYS_ADMIN'
  if (code === 'EPERM') return `the kernel refuses ${kind} programs even with every capability they need (lockdown or policy): EPERM`
  return `${kind} cannot attach here: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`
}

const attachProbesRunning = new Map<AttachKind, Promise<FeatureResult>>()

/**
 * Loads and attaches one tiny program of the given kind, then detaches it. Callers that ask while
 * the probe runs share its answer (a second cgroup probe would find the first one's cgroup).
 */
export function probeAttach(kind: AttachKind): Promise<FeatureResult> {
  const hit = cache.get(`attach:${kind}`)
  if (hit !== undefined) return Promise.resolve(hit)
  let running = attachProbesRunning.get(kind)
  if (running === undefined) {
    running = runAttachProbe(kind).finally(() => attachProbesRunning.delete(kind))
    attachProbesRunning.set(kind, running)
  }
  return running
}

async function runAttachProbe(kind: AttachKind): Promise<FeatureResult> {
  const program = `probe_${kind}`
  let result: FeatureResult
  let object: LoadedObject | undefined
  try {
    const spec = ObjectSpec.open(probesObject)
    for (const p of spec.programs()) spec.setAutoload(p.name, p.name === program)
    probePreparations[kind]?.(spec, program)
    object = await spec.load()
    attachAndDetach[kind](object)
    result = { status: 'supported' }
  } catch (error) {
    result = classify(error, `${kind} attach`, [...capabilitiesForProgramType(probeProgramTypes[kind]), ...(probeExtraNeeds[kind] ?? [])])
    if (result.status === 'unsupported') result = { status: 'unsupported', reason: whyUnsupported(kind, error) }
  } finally {
    object?.close()
  }
  if (result.status !== 'failed') cache.set(`attach:${kind}`, result)
  return result
}

/**
 * Probes every attach kind now. The runtime calls this before it drops its privileges, so that
 * every later answer comes from the cache and none depends on what the process still holds.
 */
export async function settleAttachProbes(): Promise<void> {
  for (const kind of attachKinds) await probeAttach(kind)
}

export function probeBtf(): FeatureResult {
  return existsSync('/sys/kernel/btf/vmlinux')
    ? { status: 'supported' }
    : { status: 'unsupported', reason: '/sys/kernel/btf/vmlinux is missing (kernel built without CONFIG_DEBUG_INFO_BTF)' }
}
