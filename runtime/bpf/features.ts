/**
 * Feature probes with cilium/ebpf's semantics: each answers supported, unsupported (with the
 * error that proves it) or failed (the probe itself could not tell, e.g. no privileges).
 * Only conclusive answers are cached. Attach kinds are probed by really loading and attaching
 * a tiny program from bpf/lib/probes.bpf.o, since a kernel can know a program type yet refuse it.
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { BpfError } from './errors.ts'
import { native } from './native.ts'
import { ObjectSpec, type LoadedObject } from './object.ts'
import { attachCgroup, cgroup2Root, attachKprobe, attachPerfEvent, attachRawTracepoint, attachTracepoint, attachTracing, attachUprobe, type Link } from './links.ts'

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

const isRoot = process.geteuid?.() === 0

/** Errors that prove the kernel lacks a feature, as opposed to the probe failing. */
function classify(error: unknown): FeatureResult {
  const reason = error instanceof Error ? error.message.split('\n')[0] : String(error)
  if (!(error instanceof BpfError)) return { status: 'failed', reason }
  if (['ENOENT', 'EINVAL', 'ENOTSUPP', 'EOPNOTSUPP', 'E2BIG', 'ENOSYS', 'ENODEV', 'EACCES'].includes(error.code)) return { status: 'unsupported', reason }
  // as root, EPERM is the kernel's policy (lockdown, LSM, a disabled attach type), not our rights
  if (error.code === 'EPERM' && isRoot) return { status: 'unsupported', reason }
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

export const attachKinds = ['kprobe', 'fentry', 'tp_btf', 'raw_tp', 'tracepoint', 'uprobe', 'perf_event', 'cgroup_skb', 'tc'] as const
export type AttachKind = (typeof attachKinds)[number]

const probesObject = fileURLToPath(new URL('../../bpf/lib/probes.bpf.o', import.meta.url))

const attachers: Record<AttachKind, (object: LoadedObject) => Link[]> = {
  kprobe: (o) => [attachKprobe(o, 'probe_kprobe', 'do_unlinkat')],
  fentry: (o) => [attachTracing(o, 'probe_fentry')],
  tp_btf: (o) => [attachTracing(o, 'probe_tp_btf')],
  raw_tp: (o) => [attachRawTracepoint(o, 'probe_raw_tp', 'sched_process_fork')],
  tracepoint: (o) => [attachTracepoint(o, 'probe_tracepoint', 'sched', 'sched_process_fork')],
  // the node binary exports libuv, so uv_version is a symbol every Periscope process can probe
  uprobe: (o) => [attachUprobe(o, 'probe_uprobe', process.execPath, { symbol: 'uv_version', pid: process.pid })],
  perf_event: (o) => attachPerfEvent(o, 'probe_perf_event', { frequency: 1, cpus: [0] }),
  cgroup_skb: (o) => {
    const root = cgroup2Root()
    if (root === undefined) throw new BpfError('no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup)', { op: 'cgroup2Root', errno: 2, code: 'ENOENT' })
    return [attachCgroup(o, 'probe_cgroup_skb', root)]
  },
  // attaching tc needs an interface we may not touch; loading the classifier is the test
  tc: () => [],
}

function whyUnsupported(kind: AttachKind, error: unknown): string {
  const code = error instanceof BpfError ? error.code : 'error'
  if (kind === 'kprobe' && !existsSync('/sys/bus/event_source/devices/kprobe')) return `kprobes are not available on this kernel (no kprobe PMU, CONFIG_KPROBES off): ${code}`
  if (code === 'EPERM') return `the kernel refuses ${kind} programs even as root (lockdown or policy): EPERM`
  return `${kind} cannot attach here: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`
}

/** Loads and attaches one tiny program of the given kind, then detaches it. */
export async function probeAttach(kind: AttachKind): Promise<FeatureResult> {
  const hit = cache.get(`attach:${kind}`)
  if (hit !== undefined) return hit
  const program = `probe_${kind}`
  let result: FeatureResult
  let object: LoadedObject | undefined
  try {
    const spec = ObjectSpec.open(probesObject)
    for (const p of spec.programs()) spec.setAutoload(p.name, p.name === program)
    object = await spec.load()
    for (const link of attachers[kind](object)) link.detach()
    result = { status: 'supported' }
  } catch (error) {
    result = classify(error)
    if (result.status === 'unsupported') result = { status: 'unsupported', reason: whyUnsupported(kind, error) }
  } finally {
    object?.close()
  }
  if (result.status !== 'failed') cache.set(`attach:${kind}`, result)
  return result
}

export function probeBtf(): FeatureResult {
  return existsSync('/sys/kernel/btf/vmlinux')
    ? { status: 'supported' }
    : { status: 'unsupported', reason: '/sys/kernel/btf/vmlinux is missing (kernel built without CONFIG_DEBUG_INFO_BTF)' }
}
