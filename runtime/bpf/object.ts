/**
 * Spec, then object (cilium/ebpf's split): an ObjectSpec is a parsed ELF that has not touched
 * the kernel, where settings, map sizes and autoload are decided; `load()` hands it to the
 * kernel and returns a LoadedObject, whose programs attach and whose maps hold data.
 */
import { readFileSync, statSync } from 'node:fs'
import { BtfTypes, type Layout } from './btf.ts'
import { BpfError, explain } from './errors.ts'
import { native, type NativeMap, type NativeMapInfo, type NativeObject, type NativeProgram } from './native.ts'
import { BpfMap } from './maps.ts'

export type Setting = number | bigint | boolean

export interface ProgramRunStats {
  name: string
  /** The kernel's program id (bpftool prog show id N). */
  id: number
  runTimeNs: number
  runCount: number
}

export interface ProgramInfo {
  name: string
  section: string
  type: string | null
  attachType: string | null
  instructions: number
}

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46])

export class ObjectSpec {
  readonly path: string
  readonly btf: BtfTypes
  readonly #object: NativeObject
  readonly #programs: Map<string, NativeProgram>
  readonly #maps: Map<string, NativeMap>
  #consumed = false

  private constructor(path: string, object: NativeObject, btf: BtfTypes) {
    this.path = path
    this.#object = object
    this.btf = btf
    this.#programs = new Map(object.programs().map((p) => [p.describe().name, p]))
    this.#maps = new Map(object.maps().map((m) => [m.describe().name, m]))
  }

  /** Parses a BPF ELF object. Touches no kernel state. */
  static open(path: string): ObjectSpec {
    // not existsSync: access(2) ignores capabilities for a uid other than root, so after the
    // privilege drop an object in a directory only root may enter (/root) would seem missing
    if (statSync(path, { throwIfNoEntry: false }) === undefined) throw new Error(`BPF object ${path} does not exist; run \`npm run build\` to build bpf/lib`)
    const head = readFileSync(path).subarray(0, 4)
    if (!head.equals(ELF_MAGIC)) throw new Error(`${path} is not an ELF file (bad magic); rebuild it with \`npm run build\``)
    let object: NativeObject
    try {
      object = new native.Object(path)
    } catch (error) {
      throw explain(error, `open BPF object ${path}`)
    }
    try {
      // libbpf's BTF, not the file's: only after open do .rodata variables have their offsets
      return new ObjectSpec(path, object, new BtfTypes(object.btf()))
    } catch (error) {
      object.close()
      throw explain(error, `read the BTF of BPF object ${path} (compile it with clang -g)`)
    }
  }

  get name(): string {
    return this.#object.name()
  }

  programs(): ProgramInfo[] {
    return [...this.#programs.values()].map((p) => p.describe())
  }

  maps(): NativeMapInfo[] {
    return [...this.#maps.values()].map((m) => m.describe())
  }

  /** Chooses which programs load; the rest are skipped by the verifier entirely. */
  setAutoload(program: string, autoload: boolean): this {
    this.#program(program).autoload = autoload
    return this
  }

  /** Resizes a map before load (ring buffers: bytes, a power of two and page multiple). */
  setMaxEntries(map: string, entries: number): this {
    this.#map(map).setMaxEntries(entries)
    return this
  }

  /**
   * Sets the attach type the kernel loads a program for, by libbpf's name: 'trace_uprobe_multi'
   * makes a uprobe program attach through uprobe_multi links (attachUprobe then uses them), and
   * no longer as a classic uprobe. The section name decides it otherwise.
   */
  setExpectedAttachType(program: string, attachType: string): this {
    const type = native.attachTypeNames.indexOf(attachType)
    if (type < 0) throw new Error(`unknown attach type "${attachType}" for program "${program}" of ${this.path}; known: ${native.attachTypeNames.join(', ')}`)
    this.#program(program).setExpectedAttachType(type)
    return this
  }

  /** Retargets an fentry/fexit/tp_btf program before load. */
  setAttachTarget(program: string, functionName: string): this {
    this.#program(program).setAttachTarget(functionName)
    return this
  }

  /** Writes `const volatile` settings in .rodata by name, before load. */
  setSettings(settings: Record<string, Setting>): this {
    const entries = Object.entries(settings)
    if (entries.length === 0) return this
    const variables = this.btf.sectionVariables('.rodata')
    const rodata = [...this.#maps.entries()].find(([name]) => name.endsWith('.rodata'))?.[1]
    const initial = rodata?.initialValue()
    if (rodata === undefined || initial === undefined) {
      throw new Error(`${this.path} has no settings (.rodata); known settings: none`)
    }
    const bytes = Buffer.from(initial)
    for (const [name, value] of entries) {
      const variable = variables.get(name)
      if (variable === undefined) {
        throw new Error(`unknown setting "${name}" for ${this.path}; known settings: ${[...variables.keys()].filter((n) => !n.startsWith('__')).join(', ') || 'none'}`)
      }
      writeScalar(bytes, variable.offset, variable.layout, value, name)
    }
    rodata.setInitialValue(bytes)
    return this
  }

  /** Loads every autoload program and creates the maps; the verifier runs off the main thread. */
  async load(): Promise<LoadedObject> {
    if (this.#consumed) throw new Error(`${this.path} was already loaded; open a new ObjectSpec to load it again`)
    this.#consumed = true
    try {
      await this.#object.load()
    } catch (error) {
      this.#object.close()
      throw explain(error, `load BPF object ${this.path}`)
    }
    return new LoadedObject(this.path, this.#object, this.#programs, this.#maps, this.btf)
  }

  /** Frees the parsed object without loading it. */
  close(): void {
    if (!this.#consumed) this.#object.close()
    this.#consumed = true
  }

  #program(name: string): NativeProgram {
    return byName(this.#programs, 'program', name, this.path)
  }

  #map(name: string): NativeMap {
    return byName(this.#maps, 'map', name, this.path)
  }
}

export class LoadedObject {
  readonly path: string
  readonly btf: BtfTypes
  readonly #object: NativeObject
  readonly #programs: Map<string, NativeProgram>
  readonly #maps: Map<string, NativeMap>
  #closed = false

  constructor(path: string, object: NativeObject, programs: Map<string, NativeProgram>, maps: Map<string, NativeMap>, btf: BtfTypes) {
    this.path = path
    this.#object = object
    this.#programs = programs
    this.#maps = maps
    this.btf = btf
  }

  get name(): string {
    return this.#object.name()
  }

  get closed(): boolean {
    return this.#closed
  }

  /** The native program handle, for the attach functions in links.ts. */
  program(name: string): NativeProgram {
    const program = byName(this.#programs, 'program', name, this.path)
    if (!program.autoload) throw new Error(`program "${name}" of ${this.path} was not loaded (autoload was off)`)
    return program
  }

  programs(): ProgramInfo[] {
    return [...this.#programs.values()].filter((p) => p.autoload).map((p) => p.describe())
  }

  /**
   * Each loaded program's run time and run count as the kernel counted them: only while BPF stats
   * are on (runtime/bpf/stats.ts), so both stay 0 otherwise.
   */
  programStats(): ProgramRunStats[] {
    const out: ProgramRunStats[] = []
    for (const [name, program] of this.#programs) {
      if (!program.autoload) continue
      const { id, runTimeNs, runCount } = program.runStats()
      out.push({ name, id, runTimeNs, runCount })
    }
    return out
  }

  map(name: string): BpfMap {
    const map = byName(this.#maps, 'map', name, this.path)
    return new BpfMap(map, `${this.name}:${name}`)
  }

  maps(): NativeMapInfo[] {
    return [...this.#maps.values()].map((m) => m.describe())
  }

  /** Drops counted by RESERVE_OR_DROP, summed over CPUs; 0 for objects without a `dropped` map. */
  dropped(): number {
    if (!this.#maps.has('dropped')) return 0
    const perCpu = this.map('dropped').lookupPerCpu(new Uint8Array(4))
    return perCpu.reduce((sum, value) => sum + Number(Buffer.from(value).readBigUInt64LE(0)), 0)
  }

  /**
   * Detaches every link of this object and unloads it. Ring and perf buffer readers open on its
   * maps hold their own reference: they keep delivering what the buffers held until they close.
   */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#object.close()
  }
}

/** A program or map by name, or an error that lists the names the object has. */
function byName<T>(items: Map<string, T>, kind: string, name: string, path: string): T {
  const item = items.get(name)
  if (item === undefined) throw new Error(`unknown ${kind} "${name}" in ${path}; it has: ${[...items.keys()].join(', ') || 'none'}`)
  return item
}

function writeScalar(bytes: Buffer, offset: number, layout: Layout, value: Setting, name: string): void {
  if (layout.kind !== 'scalar') throw new Error(`setting "${name}" is a ${layout.kind}, not a number; only scalar settings can be set`)
  const invalid = (why: string) => new BpfError(`setting "${name}" is a ${layout.scalar}: ${why}`, { op: 'setSettings', errno: 22, code: 'EINVAL' })
  if (typeof value === 'number' && !Number.isInteger(value) && !layout.scalar.startsWith('f')) throw invalid(`it must be an integer, got ${value}`)
  const integer = (): bigint => (typeof value === 'bigint' ? value : BigInt(Number(value)))
  try {
    switch (layout.scalar) {
      case 'u8': case 'bool': bytes.writeUInt8(Number(integer()), offset); break
      case 'i8': bytes.writeInt8(Number(integer()), offset); break
      case 'u16': bytes.writeUInt16LE(Number(integer()), offset); break
      case 'i16': bytes.writeInt16LE(Number(integer()), offset); break
      case 'u32': bytes.writeUInt32LE(Number(integer()), offset); break
      case 'i32': bytes.writeInt32LE(Number(integer()), offset); break
      case 'u64': case 'addr64': bytes.writeBigUInt64LE(integer(), offset); break
      case 'i64': bytes.writeBigInt64LE(integer(), offset); break
      case 'f32': bytes.writeFloatLE(Number(value), offset); break
      case 'f64': bytes.writeDoubleLE(Number(value), offset); break
    }
  } catch (error) {
    // Buffer's range errors name neither the setting nor its type
    if (error instanceof RangeError) throw invalid(`${value} does not fit (${error.message})`)
    throw error
  }
}
