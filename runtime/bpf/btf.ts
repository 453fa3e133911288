/**
 * BTF as the single source of record layouts. The build turns it into generated decoders
 * (bpf/lib/<name>.types.ts); the loader uses it to find `.rodata` settings by name. Markers
 * from bpf/include/periscope.h (addr64, strings_t) travel as typedef names.
 */
import type { BtfType } from './native.ts'

export type ScalarKind = 'u8' | 'u16' | 'u32' | 'u64' | 'i8' | 'i16' | 'i32' | 'i64' | 'f32' | 'f64' | 'bool' | 'addr64'

export type Layout =
  | { kind: 'scalar'; scalar: ScalarKind; size: number }
  | { kind: 'string'; size: number }
  | { kind: 'strings'; size: number }
  | { kind: 'bytes'; size: number }
  | { kind: 'array'; size: number; length: number; element: Layout }
  | { kind: 'struct'; size: number; name: string; fields: Field[] }

export interface Field {
  name: string
  offset: number
  layout: Layout
  /** a trailing flexible array: its bytes run to the end of the record */
  flexible?: boolean
}

export class BtfTypes {
  readonly types: BtfType[]

  constructor(types: BtfType[]) {
    this.types = types
  }

  byName(kind: string, name: string): BtfType | undefined {
    return this.types.find((t) => t.kind === kind && t.name === name)
  }

  /** Follows typedefs and qualifiers, remembering the outermost typedef name seen. */
  resolve(id: number): { type: BtfType; typedef?: string } {
    let typedef: string | undefined
    let type = this.types[id]
    while (['typedef', 'const', 'volatile', 'restrict', 'type_tag'].includes(type.kind)) {
      if (type.kind === 'typedef' && typedef === undefined) typedef = type.name
      type = this.types[type.type!]
    }
    return { type, typedef }
  }

  layout(id: number): Layout {
    const { type, typedef } = this.resolve(id)
    switch (type.kind) {
      case 'int': {
        if (typedef === 'addr64') return { kind: 'scalar', scalar: 'addr64', size: 8 }
        if (type.bool === true) return { kind: 'scalar', scalar: 'bool', size: type.size! }
        const bits = type.size! * 8
        return { kind: 'scalar', scalar: `${type.signed === true ? 'i' : 'u'}${bits}` as ScalarKind, size: type.size! }
      }
      case 'enum':
      case 'enum64':
        return { kind: 'scalar', scalar: `u${type.size! * 8}` as ScalarKind, size: type.size! }
      case 'float':
        return { kind: 'scalar', scalar: type.size === 4 ? 'f32' : 'f64', size: type.size! }
      case 'ptr':
        return { kind: 'scalar', scalar: 'addr64', size: 8 }
      case 'array': {
        const element = this.resolve(type.type!)
        const length = type.length!
        if (element.type.kind === 'int' && element.type.size === 1) {
          if (element.typedef === 'strings_t') return { kind: 'strings', size: length }
          if (element.type.char === true || element.type.signed === true) return { kind: 'string', size: length }
          return { kind: 'bytes', size: length }
        }
        const inner = this.layout(type.type!)
        return { kind: 'array', size: inner.size * length, length, element: inner }
      }
      case 'struct':
      case 'union': {
        const fields: Field[] = (type.members ?? []).map((m, i, all) => {
          if (m.bitSize !== 0) throw new Error(`${type.name}.${m.name}: bitfields are not supported in event structs; use whole integers`)
          const layout = this.layout(m.type)
          const flexible = i === all.length - 1 && layout.size === 0 && (layout.kind === 'bytes' || layout.kind === 'string')
          return { name: m.name, offset: m.bitOffset / 8, layout, flexible }
        })
        return { kind: 'struct', size: type.size!, name: type.name, fields }
      }
      default:
        throw new Error(`BTF type ${id} (${type.kind} ${type.name}) cannot be decoded; event structs use fixed-width integers and arrays`)
    }
  }

  /**
   * Variables of a data section (.rodata, .bss, .data) by name, with offset and layout. Needs
   * the BTF of an opened object (ObjectSpec.btf): in the ELF's own .BTF every variable is at
   * offset 0 and the section has size 0, until libbpf lays it out from the symbol table.
   */
  sectionVariables(section: string): Map<string, { offset: number; size: number; layout: Layout }> {
    const sec = this.byName('datasec', section)
    if (sec !== undefined && sec.size === 0 && (sec.vars ?? []).length > 0) {
      throw new Error(`BTF section ${section} has no layout yet (size 0, every variable at offset 0): this is an ELF's raw BTF; use the BTF of the opened object (ObjectSpec.open(path).btf)`)
    }
    const out = new Map<string, { offset: number; size: number; layout: Layout }>()
    for (const v of sec?.vars ?? []) {
      const variable = this.types[v.type]
      if (variable.kind !== 'var') continue
      out.set(variable.name, { offset: v.offset, size: v.size, layout: this.layout(variable.type!) })
    }
    return out
  }

  /** Pairs each ring/perf buffer with the struct named by RECORD(map, type) in the C source. */
  records(): Map<string, number> {
    const out = new Map<string, number>()
    for (const t of this.types) {
      if (t.kind !== 'var' || !t.name.startsWith('__periscope_record_')) continue
      const pointer = this.resolve(t.type!).type
      if (pointer.kind !== 'ptr') continue
      out.set(t.name.slice('__periscope_record_'.length), this.resolve(pointer.type!).type.id)
    }
    return out
  }
}
