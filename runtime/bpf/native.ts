/**
 * Loads the libbpf addon and describes its surface. Only runtime/bpf talks to it; everything
 * else uses the typed layer. The build (scripts/build.ts) compiles it into native/build.
 */
import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { BpfError } from './errors.ts'

export interface NativeProgram {
  describe(): { name: string; section: string; type: string | null; attachType: string | null; instructions: number }
  fd(): number
  autoload: boolean
  /** Before load: the attach type the kernel checks the program against (a number of native.attachTypeNames). */
  setExpectedAttachType(type: number): void
  setAttachTarget(functionName: string): void
  attachTracepoint(category: string, name: string, cookie?: bigint): NativeLink
  attachRawTracepoint(name: string): NativeLink
  attachTrace(cookie?: bigint): NativeLink
  attachKprobe(retprobe: boolean, functionName: string, offset: number, cookie?: bigint): NativeLink
  attachUprobe(retprobe: boolean, pid: number, binary: string, functionName: string | null, offset: number, cookie?: bigint): NativeLink
  /** A uprobe_multi link (BPF_LINK_CREATE) on file offsets of `binary`; pid 0: every process. */
  attachUprobeMulti(retprobe: boolean, pid: number, binary: string, offsets: number[], cookies?: bigint[]): NativeLink
  attachPerfEvent(type: number, config: number, frequency: number, period: number, pid: number, cpu: number, cookie?: bigint): NativeLink
  attachCgroup(cgroupFd: number): NativeLink
  attachTc(ifindex: number, egress: boolean, priority: number): NativeLink
  /** An iterator link; pid > 0 limits a task iterator to that process. */
  attachIter(pid: number): NativeLink
  testRun(context?: Uint8Array | null, repeat?: number): number
  /** What the kernel counted for this program while BPF stats were on (enableStats). */
  runStats(): { id: number; runTimeNs: number; runCount: number; recursionMisses: number }
}

export interface NativeMapInfo {
  name: string
  type: string | null
  keySize: number
  valueSize: number
  maxEntries: number
  flags: number
  perCpu: boolean
  fd: number
  id?: number
}

export interface NativeMap {
  describe(): NativeMapInfo
  setMaxEntries(entries: number): void
  initialValue(): Uint8Array | undefined
  setInitialValue(value: Uint8Array): void
  lookup(key: Uint8Array): Uint8Array | undefined
  update(key: Uint8Array, value: Uint8Array, flags?: number): void
  delete(key: Uint8Array): boolean
  nextKey(key: Uint8Array | null): Uint8Array | undefined
  lookupBatch(token: Uint8Array | null, count: number): { keys: Uint8Array; values: Uint8Array; count: number; token: Uint8Array | null }
}

export interface NativeLinkInfo {
  kind: string
  attached: boolean
  id?: number
  progId?: number
  type?: string | null
  fd?: number
  ifindex?: number
}

export interface NativeLink {
  detach(): boolean
  info(): NativeLinkInfo
  /** Iterator links only: the fd of a new instance, read to EOF to run it (bpf_iter_create). */
  iterCreate(): number
}

export interface NativeObject {
  load(): Promise<void>
  programs(): NativeProgram[]
  maps(): NativeMap[]
  name(): string
  /** The object's BTF as libbpf laid it out at open: data sections have their real variable offsets. */
  btf(): BtfType[]
  close(): void
}

/**
 * (buffer, byteLength, count, lost) per batch, or (error) when consuming failed. It should not
 * throw: if it does, the batch is still consumed (never delivered again), and the exception
 * reaches drain()'s caller, or process 'uncaughtException' when the event loop delivered.
 */
export type NativeBatchCallback = (bufferOrError: ArrayBuffer | Error, byteLength?: number, count?: number, lost?: number) => void

export interface NativeConsumer {
  start(): void
  pause(): void
  drain(): void
  close(): void
}

export interface BtfType {
  id: number
  kind: string
  name: string
  size?: number
  bits?: number
  signed?: boolean
  char?: boolean
  bool?: boolean
  type?: number
  length?: number
  members?: { name: string; type: number; bitOffset: number; bitSize: number }[]
  vars?: { type: number; offset: number; size: number }[]
}

export interface NativeAddon {
  setErrorClass(cls: typeof BpfError): void
  Object: new (path: string) => NativeObject
  RingBuffer: new (mapFd: number, onBatch: NativeBatchCallback, batchBytes: number, idleDrainMs?: number) => NativeConsumer
  PerfBuffer: new (mapFd: number, pagesPerCpu: number, onBatch: NativeBatchCallback, batchBytes: number) => NativeConsumer
  /** An ELF's .BTF as clang wrote it, where every data-section variable is at offset 0; NativeObject.btf() has the real offsets. */
  btfTypes(path: string): BtfType[]
  /** Switches every thread to `uid`/`gid`, no_new_privs and the capabilities `keep` (native/src/capabilities.cc); see runtime/privileges.ts. */
  setProcessCredentials(keep: bigint, uid: number, gid: number, timeoutMs?: number): { tid: number; result: 'changed' | 'failed' | 'exited' | 'pending'; error?: BpfError }[]
  /** Makes `mask` this thread's inheritable and ambient capabilities, which the next process it starts keeps (native/src/capabilities.cc). */
  setAmbientCapabilities(mask: bigint): void
  /** Calls `fn` on this thread inside a new, empty network namespace, then returns to the original (native/src/namespaces.cc). */
  withFreshNetworkNamespace<T>(fn: () => T): T
  /** clock_gettime(clockid) in nanoseconds (native/src/clock.cc): Node has no CLOCK_BOOTTIME. */
  clockGettime(clockid: number): bigint
  /** malloc_trim(0) (native/src/heap_trim.cc): the C heap's free pages back to the kernel; whether any went. */
  trimHeap(): boolean
  /** BPF_ENABLE_STATS: stats of `type` (0: run time and count) on for every program while the returned fd is open. */
  enableStats(type: number): number
  probeProgType(type: number): boolean | BpfError
  probeMapType(type: number): boolean | BpfError
  probeHelper(progType: number, helper: number): boolean | BpfError
  versions(): { libbpf: string; possibleCpus: number }
  progTypeNames: string[]
  mapTypeNames: string[]
  /** By enum bpf_attach_type; libbpf 1.1's names, then those of newer types as newer libbpf spells them. */
  attachTypeNames: string[]
}

export const addonPath = fileURLToPath(new URL('../../native/build/Release/periscope_bpf.node', import.meta.url))

function loadAddon(): NativeAddon {
  if (!existsSync(addonPath)) {
    throw new Error(`the libbpf addon is not built (${addonPath} is missing); run \`npm run build\` (or \`./periscope check\`, which builds it)`)
  }
  const addon = createRequire(import.meta.url)(addonPath) as NativeAddon
  addon.setErrorClass(BpfError)
  return addon
}

export const native: NativeAddon = loadAddon()
