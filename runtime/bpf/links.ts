/**
 * One attach function per attach type (cilium/ebpf's link package). Each returns Links whose
 * `detach()` is idempotent; closing the object detaches whatever is still attached, and so does
 * process exit (the kernel drops links with their last fd).
 */
import { existsSync, openSync, closeSync, statSync, readFile, readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { ElfError, functionFileOffset } from '../symbols/elf.ts'
import { functionReturns } from '../symbols/returns.ts'
import { explain } from './errors.ts'
import type { NativeLink, NativeLinkInfo } from './native.ts'
import type { LoadedObject } from './object.ts'

export class Link {
  /** The program attached. */
  readonly program: string
  /** What it is attached to, e.g. 'tracepoint sched:sched_process_exec'. */
  readonly target: string
  readonly #link: NativeLink

  constructor(link: NativeLink, program: string, target: string) {
    this.#link = link
    this.program = program
    this.target = target
  }

  /** The kernel's link id (what `bpftool link list` shows); 0 for tc filters, which have none. */
  get id(): number {
    return this.#link.info().id ?? 0
  }

  info(): NativeLinkInfo {
    return this.#link.info()
  }

  /** Returns true when this call detached the link. */
  detach(): boolean {
    return this.#link.detach()
  }
}

interface CookieOption {
  /** Read back in the program with bpf_get_attach_cookie(). */
  cookie?: bigint
}

function attach(object: LoadedObject, program: string, target: string, fn: () => NativeLink): Link {
  const handle = object.program(program)
  try {
    return new Link(fn.call(handle), program, target)
  } catch (error) {
    throw explain(error, `attach ${program} to ${target}`)
  }
}

const TRACEFS = '/sys/kernel/tracing'

/**
 * A classic tracepoint (`SEC("tracepoint/…")`). Linux 4.7; cookies need 5.15.
 * @example attachTracepoint(obj, 'handle_exec', 'sched', 'sched_process_exec')
 */
export function attachTracepoint(object: LoadedObject, program: string, category: string, name: string, options: CookieOption = {}): Link {
  if (existsSync(`${TRACEFS}/events`) && !existsSync(`${TRACEFS}/events/${category}/${name}`)) {
    throw new Error(`attach ${program}: tracepoint ${category}:${name} does not exist on this kernel (see ${TRACEFS}/events/${category}/)`)
  }
  const p = object.program(program)
  return attach(object, program, `tracepoint ${category}:${name}`, () => p.attachTracepoint(category, name, options.cookie))
}

/**
 * A raw tracepoint (`SEC("raw_tp/…")`), arguments as the kernel passes them. Linux 4.17.
 * @example attachRawTracepoint(obj, 'on_switch', 'sched_switch')
 */
export function attachRawTracepoint(object: LoadedObject, program: string, name: string): Link {
  const p = object.program(program)
  return attach(object, program, `raw_tp ${name}`, () => p.attachRawTracepoint(name))
}

/**
 * BTF-typed tracing programs: tp_btf (Linux 5.5), fentry/fexit (5.5, x86), whose target was fixed
 * at load time by the section name or ObjectSpec.setAttachTarget().
 * @example attachTracing(obj, 'on_fork')
 */
export function attachTracing(object: LoadedObject, program: string, options: CookieOption = {}): Link {
  const p = object.program(program)
  return attach(object, program, p.describe().section, () => p.attachTrace(options.cookie))
}

/**
 * A kprobe or kretprobe on a kernel function. Needs CONFIG_KPROBES; cookies need 5.15.
 * @example attachKprobe(obj, 'on_unlink', 'do_unlinkat')
 */
export function attachKprobe(object: LoadedObject, program: string, functionName: string, options: CookieOption & { retprobe?: boolean; offset?: number } = {}): Link {
  const p = object.program(program)
  const kind = options.retprobe === true ? 'kretprobe' : 'kprobe'
  return attach(object, program, `${kind} ${functionName}`, () => p.attachKprobe(options.retprobe === true, functionName, options.offset ?? 0, options.cookie))
}

export interface UprobeOptions extends CookieOption {
  retprobe?: boolean
  /** Only this process; all processes when omitted. */
  pid?: number
  /** The function's symbol (found in the ELF's .dynsym or .symtab, else in Go's .gopclntab), or… */
  symbol?: string
  /** …a file offset (added to the symbol's when both are given). */
  offset?: number
}

/** The attach type a uprobe program is loaded for (ObjectSpec.setExpectedAttachType) to attach through uprobe_multi links. */
export const UPROBE_MULTI_ATTACH_TYPE = 'trace_uprobe_multi'

/** What to say about a uprobe: 'uprobe /bin/x:main' ('uretprobe …', '0x…' for an offset). */
function uprobeTarget(kind: string, binary: string, options: UprobeOptions): string {
  return `${kind} ${binary}:${options.symbol ?? `0x${(options.offset ?? 0).toString(16)}`}`
}

function checkUprobe(program: string, binary: string, options: UprobeOptions): void {
  // not existsSync: access(2) checks the real uid and, for one that is not root, ignores every
  // capability, so after the privilege drop a binary only root may reach would seem missing
  if (statSync(binary, { throwIfNoEntry: false }) === undefined) throw new Error(`attach ${program}: binary ${binary} does not exist`)
  if (options.symbol === undefined && options.offset === undefined) throw new Error(`attach ${program}: a uprobe needs a symbol or an offset in ${binary}`)
}

/**
 * A uprobe or uretprobe on a user-space binary or library. Linux 4.17 (fd-based), cookies 5.15.
 * A program loaded for uprobe_multi links (UPROBE_MULTI_ATTACH_TYPE) attaches through
 * attachUprobeMulti; any other through the uprobe PMU, which the kernel allows only with
 * CAP_SYS_ADMIN. The symbol is found in user space (runtime/symbols/elf.ts, Go's .gopclntab
 * included); a missing one throws with code ENOSYMBOL.
 * @example attachUprobe(obj, 'on_ssl_write', '/usr/lib/x86_64-linux-gnu/libssl.so.3', { symbol: 'SSL_write' })
 */
export function attachUprobe(object: LoadedObject, program: string, binary: string, options: UprobeOptions): Link {
  const p = object.program(program)
  if (p.describe().attachType === UPROBE_MULTI_ATTACH_TYPE) return attachUprobeMulti(object, program, binary, options)
  checkUprobe(program, binary, options)
  const target = uprobeTarget(options.retprobe === true ? 'uretprobe' : 'uprobe', binary, options)
  // found here rather than by libbpf, whose resolver does not read Go's .gopclntab
  const offset = (options.offset ?? 0) + (options.symbol === undefined ? 0 : symbolOffset(program, target, binary, options.symbol))
  return attach(object, program, target, () =>
    p.attachUprobe(options.retprobe === true, options.pid ?? -1, binary, null, offset, options.cookie))
}

/** The file offset of `symbol` in `binary`; an ElfError names the attach it was for. */
function symbolOffset(program: string, target: string, binary: string, symbol: string): number {
  try {
    return functionFileOffset(binary, symbol)
  } catch (error) {
    if (error instanceof ElfError) throw new ElfError(error.code, `attach ${program} to ${target}: ${error.message}`)
    throw error
  }
}

/**
 * A uprobe or uretprobe as a uprobe_multi link (Linux 6.6), for a program loaded with expected
 * attach type UPROBE_MULTI_ATTACH_TYPE. It needs only CAP_BPF and CAP_PERFMON (and the right to
 * open the binary), so it attaches after Periscope dropped CAP_SYS_ADMIN. The symbol is found
 * in user space (runtime/symbols/elf.ts); a missing one throws with code ENOSYMBOL.
 * @example attachUprobeMulti(obj, 'on_ssl_write', '/usr/lib/x86_64-linux-gnu/libssl.so.3', { symbol: 'SSL_write' })
 */
export function attachUprobeMulti(object: LoadedObject, program: string, binary: string, options: UprobeOptions): Link {
  checkUprobe(program, binary, options)
  const p = object.program(program)
  const target = uprobeTarget(options.retprobe === true ? 'uretprobe_multi' : 'uprobe_multi', binary, options)
  if (p.describe().attachType !== UPROBE_MULTI_ATTACH_TYPE) {
    throw new Error(`attach ${program} to ${target}: the program was not loaded for uprobe_multi links; ` +
      `call setExpectedAttachType('${program}', '${UPROBE_MULTI_ATTACH_TYPE}') on its ObjectSpec before load`)
  }
  const offset = (options.offset ?? 0) + (options.symbol === undefined ? 0 : symbolOffset(program, target, binary, options.symbol))
  const cookies = options.cookie === undefined ? undefined : [options.cookie]
  return attach(object, program, target, () => p.attachUprobeMulti(options.retprobe === true, options.pid ?? 0, binary, [offset], cookies))
}

export interface UprobeReturnsOptions extends CookieOption {
  /** The function's symbol (.dynsym, .symtab, or Go's .gopclntab). */
  symbol: string
  /** Only this process; all processes when omitted. */
  pid?: number
}

/**
 * A uprobe program (not a uretprobe) at every return instruction of function `symbol`, found by
 * decoding it (runtime/symbols/returns.ts; x86-64 only): where a uretprobe cannot go, in Go, whose
 * moving stacks a uretprobe's swapped return address corrupts. A program loaded for uprobe_multi
 * links (Linux 6.6) gets one link with every offset; any other, one classic uprobe per return
 * instruction (uprobe PMU: CAP_SYS_ADMIN). Throws an ElfError for a function it cannot place them
 * in (ENOSYMBOL, EINVAL).
 * @example attachUprobeReturns(obj, 'go_tls_read_ret', '/usr/local/bin/server', { symbol: 'crypto/tls.(*Conn).Read' })  // { links: [Link], returns: 3 }
 */
export function attachUprobeReturns(object: LoadedObject, program: string, binary: string, options: UprobeReturnsOptions): { links: Link[]; returns: number } {
  checkUprobe(program, binary, options)
  const p = object.program(program)
  const multi = p.describe().attachType === UPROBE_MULTI_ATTACH_TYPE
  const target = `${multi ? 'uprobe_multi' : 'uprobe'} ${binary}:${options.symbol} at its returns`
  let offsets: readonly number[]
  try {
    offsets = functionReturns(binary, options.symbol).offsets
  } catch (error) {
    if (error instanceof ElfError) throw new ElfError(error.code, `attach ${program} to ${target}: ${error.message}`)
    throw error
  }
  const returns = offsets.length
  if (multi) {
    const cookies = options.cookie === undefined ? undefined : offsets.map(() => options.cookie!)
    return { links: [attach(object, program, `uprobe_multi ${binary}:${options.symbol} (${returns} returns)`, () => p.attachUprobeMulti(false, options.pid ?? 0, binary, [...offsets], cookies))], returns }
  }
  const links: Link[] = []
  try {
    for (const [i, offset] of offsets.entries()) {
      links.push(attach(object, program, `uprobe ${binary}:0x${offset.toString(16)} (return ${i + 1} of ${returns} of ${options.symbol})`, () =>
        p.attachUprobe(false, options.pid ?? -1, binary, null, offset, options.cookie)))
    }
  } catch (error) {
    for (const link of links) link.detach()
    throw error
  }
  return { links, returns }
}

export const PERF_TYPE_HARDWARE = 0
export const PERF_TYPE_SOFTWARE = 1
export const PERF_COUNT_HW_CPU_CYCLES = 0
export const PERF_COUNT_SW_CPU_CLOCK = 0

export interface PerfEventOptions extends CookieOption {
  type?: number
  config?: number
  /** Samples per second per CPU (mutually exclusive with period). */
  frequency?: number
  period?: number
  /** Only this process; all processes when omitted. */
  pid?: number
  /** CPUs to sample; every online CPU when omitted. */
  cpus?: number[]
}

/** The online CPUs, from /sys/devices/system/cpu/online ("0-3,5"). */
export function onlineCpus(): number[] {
  const text = readFileSync('/sys/devices/system/cpu/online', 'utf8').trim()
  return text.split(',').flatMap((range) => {
    const [from, to] = range.split('-').map(Number)
    return Array.from({ length: (to ?? from) - from + 1 }, (_, i) => from + i)
  })
}

/**
 * A perf_event sampling program on every CPU (software cpu-clock at N Hz by default; hardware
 * events where the machine has a PMU). Linux 4.9; cookies 5.15. Returns one Link per CPU.
 * @example attachPerfEvent(obj, 'on_sample', { frequency: 99 })
 */
export function attachPerfEvent(object: LoadedObject, program: string, options: PerfEventOptions = {}): Link[] {
  const type = options.type ?? PERF_TYPE_SOFTWARE
  const config = options.config ?? PERF_COUNT_SW_CPU_CLOCK
  if (options.frequency === undefined && options.period === undefined) throw new Error(`attach ${program}: perf_event sampling needs a frequency or a period`)
  const p = object.program(program)
  const links: Link[] = []
  try {
    for (const cpu of options.cpus ?? onlineCpus()) {
      links.push(attach(object, program, `perf_event type ${type} config ${config} cpu ${cpu}`, () =>
        p.attachPerfEvent(type, config, options.frequency ?? 0, options.period ?? 0, options.pid ?? -1, cpu, options.cookie)))
    }
  } catch (error) {
    for (const link of links) link.detach()
    throw error
  }
  return links
}

/** Where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems). */
export function cgroup2Root(): string | undefined {
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, where, type] = line.split(' ')
    if (type === 'cgroup2') return where
  }
  return undefined
}

/**
 * A cgroup program (cgroup_skb, sock, …) on a cgroup v2 directory. Linux 5.7 for links.
 * @example attachCgroup(obj, 'count_ingress', '/sys/fs/cgroup/my.slice')
 */
export function attachCgroup(object: LoadedObject, program: string, cgroupPath: string): Link {
  if (!existsSync(cgroupPath)) throw new Error(`attach ${program}: cgroup ${cgroupPath} does not exist`)
  const p = object.program(program)
  const fd = openSync(cgroupPath, 'r')
  try {
    return attach(object, program, `cgroup ${cgroupPath}`, () => p.attachCgroup(fd))
  } finally {
    closeSync(fd)
  }
}

/**
 * A tc classifier on an interface's clsact ingress or egress hook (created when missing).
 * Linux 4.1; such filters have no link id. The Link's detach() removes the filter.
 * @example attachTc(obj, 'classify', 'eth0', { direction: 'ingress' })
 */
export function attachTc(object: LoadedObject, program: string, interfaceName: string, options: { direction: 'ingress' | 'egress'; priority?: number }): Link {
  const ifindexPath = `/sys/class/net/${interfaceName}/ifindex`
  if (!existsSync(ifindexPath)) throw new Error(`attach ${program}: network interface ${interfaceName} does not exist`)
  const ifindex = Number(readFileSync(ifindexPath, 'utf8'))
  const p = object.program(program)
  return attach(object, program, `tc ${options.direction} ${interfaceName}`, () => p.attachTc(ifindex, options.direction === 'egress', options.priority ?? 1))
}

const readWholeFd = promisify(readFile) as (fd: number) => Promise<Buffer>

/** A link of an iterator program (`SEC("iter/…")`): nothing runs until `read()`. */
export class IteratorLink extends Link {
  readonly #native: NativeLink

  constructor(link: NativeLink, program: string, target: string) {
    super(link, program, target)
    this.#native = link
  }

  /**
   * Runs the iterator once over everything it iterates and resolves to what it printed. The
   * kernel runs it as the instance is read, on libuv's thread pool, so the event loop never waits.
   */
  async read(): Promise<Buffer> {
    let fd: number
    try {
      fd = this.#native.iterCreate()
    } catch (error) {
      throw explain(error, `run ${this.target}`)
    }
    try {
      return await readWholeFd(fd)
    } catch (error) {
      throw new Error(`run ${this.target}: reading its output failed: ${(error as Error).message}`, { cause: error })
    } finally {
      closeSync(fd)
    }
  }
}

/**
 * An iterator program (`SEC("iter/task_file")`, `iter/task_vma`, …). Linux 5.8; `pid` (only that
 * process's tasks, for task, task_file and task_vma iterators) needs 6.1.
 * @example const link = attachIterator(obj, 'mapped_libraries', { pid: 1234 }); (await link.read()).toString()
 */
export function attachIterator(object: LoadedObject, program: string, options: { pid?: number } = {}): IteratorLink {
  const pid = options.pid ?? 0
  if (!Number.isInteger(pid) || pid < 0 || pid > 0x7fffffff) throw new Error(`attach iterator ${program}: pid must be a positive integer, got ${options.pid}`)
  const p = object.program(program)
  const { section } = p.describe()
  if (!/^iter(\.s)?\//.test(section)) throw new Error(`attach iterator ${program}: it is a "${section}" program, not an iterator (SEC("iter/…"))`)
  const target = pid > 0 ? `iterator ${program} of pid ${pid}` : `iterator ${program}`
  try {
    return new IteratorLink(p.attachIter(pid), program, target)
  } catch (error) {
    throw explain(error, `attach ${target}`)
  }
}

/**
 * Runs an iterator program once and resolves to what it printed; the link lives for this run only.
 * @example (await runIterator(obj, 'mapped_libraries')).toString()  // "<pid> <path>\n" lines
 */
export async function runIterator(object: LoadedObject, program: string, options: { pid?: number } = {}): Promise<Buffer> {
  const link = attachIterator(object, program, options)
  try {
    return await link.read()
  } finally {
    link.detach()
  }
}

/** Runs a `SEC("syscall")` (or raw_tp) program once in this thread; returns its return value. */
export function testRun(object: LoadedObject, program: string, context?: Uint8Array): number {
  const p = object.program(program)
  try {
    return p.testRun(context ?? null)
  } catch (error) {
    throw explain(error, `test run ${program}`)
  }
}

