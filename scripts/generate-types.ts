/**
 * Generates bpf/lib/<name>.types.ts from an object's BTF: record and map types, DataView
 * decoders (and encoders for map keys/values), and name constants. The C struct stays the one
 * source of every offset. The output is self-contained so esbuild can bundle it into isolates,
 * which have no TextDecoder: strings are decoded by hand.
 */
import type { BtfTypes, Field, Layout } from '../runtime/bpf/btf.ts'

export interface ObjectDescription {
  name: string
  btf: BtfTypes
  programs: string[]
  maps: { name: string; type: string | null }[]
}

const pascal = (name: string): string => name.replace(/(^|_)([a-z0-9])/g, (_, __, c: string) => c.toUpperCase())
const constant = (name: string): string => name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()

function tsType(layout: Layout): string {
  switch (layout.kind) {
    case 'scalar':
      return layout.scalar === 'addr64' ? 'bigint' : layout.scalar === 'bool' ? 'boolean' : 'number'
    case 'string': return 'string'
    case 'strings': return 'string[]'
    case 'bytes': return 'Uint8Array'
    case 'array': return `${tsType(layout.element)}[]`
    case 'struct': return pascal(layout.name)
  }
}

function readScalar(scalar: string, at: string): string {
  switch (scalar) {
    case 'u8': return `view.getUint8(${at})`
    case 'i8': return `view.getInt8(${at})`
    case 'bool': return `view.getUint8(${at}) !== 0`
    case 'u16': return `view.getUint16(${at}, true)`
    case 'i16': return `view.getInt16(${at}, true)`
    case 'u32': return `view.getUint32(${at}, true)`
    case 'i32': return `view.getInt32(${at}, true)`
    // exact below 2^53 (104 days of nanoseconds); use addr64 in the C struct for full range
    case 'u64': return `view.getUint32(${at}, true) + view.getUint32(${at} + 4, true) * 4294967296`
    case 'i64': return `Number(view.getBigInt64(${at}, true))`
    case 'addr64': return `view.getBigUint64(${at}, true)`
    case 'f32': return `view.getFloat32(${at}, true)`
    case 'f64': return `view.getFloat64(${at}, true)`
  }
  throw new Error(`no reader for ${scalar}`)
}

function writeScalar(scalar: string, at: string, value: string): string {
  switch (scalar) {
    case 'u8': return `view.setUint8(${at}, ${value})`
    case 'i8': return `view.setInt8(${at}, ${value})`
    case 'bool': return `view.setUint8(${at}, ${value} ? 1 : 0)`
    case 'u16': return `view.setUint16(${at}, ${value}, true)`
    case 'i16': return `view.setInt16(${at}, ${value}, true)`
    case 'u32': return `view.setUint32(${at}, ${value}, true)`
    case 'i32': return `view.setInt32(${at}, ${value}, true)`
    case 'u64': return `view.setBigUint64(${at}, BigInt(${value}), true)`
    case 'i64': return `view.setBigInt64(${at}, BigInt(${value}), true)`
    case 'addr64': return `view.setBigUint64(${at}, ${value}, true)`
    case 'f32': return `view.setFloat32(${at}, ${value}, true)`
    case 'f64': return `view.setFloat64(${at}, ${value}, true)`
  }
  throw new Error(`no writer for ${scalar}`)
}

/** `depth`: how many arrays enclose this one, so an array of arrays gets an index of its own per level. */
function readExpr(layout: Layout, at: string, field?: Field & { filledBy?: number }, depth = 0): string {
  switch (layout.kind) {
    case 'scalar': return readScalar(layout.scalar, at)
    case 'string': return field?.flexible === true ? `readString(view, ${at}, end - (${at}))` : `readString(view, ${at}, ${layout.size})`
    case 'strings': return field?.filledBy !== undefined ? `readStrings(view, ${at}, ${layout.size}, ${readScalar('u32', `offset + ${field.filledBy}`)})` : `readStrings(view, ${at}, ${layout.size})`
    case 'bytes': return field?.flexible === true
      ? `new Uint8Array(view.buffer, view.byteOffset + ${at}, Math.max(0, end - (${at})))`
      : `new Uint8Array(view.buffer, view.byteOffset + ${at}, ${layout.size})`
    case 'array': return `Array.from({ length: ${layout.length} }, (_, i${depth}) => ${readExpr(layout.element, `${at} + i${depth} * ${layout.element.size}`, undefined, depth + 1)})`
    case 'struct': return `decode${pascal(layout.name)}(view, ${at})`
  }
}

function writeStatements(layout: Layout, at: string, value: string, depth = 0): string[] {
  switch (layout.kind) {
    case 'scalar': return [`${writeScalar(layout.scalar, at, value)}`]
    case 'string': case 'strings': return [`writeString(view, ${at}, ${layout.size}, ${layout.kind === 'strings' ? `${value}.join('\\0')` : value})`]
    case 'bytes': return [`new Uint8Array(view.buffer, view.byteOffset + ${at}, ${layout.size}).set(${value}.subarray(0, ${layout.size}))`]
    case 'array': {
      const i = `i${depth}`
      return [`for (let ${i} = 0; ${i} < ${layout.length}; ${i}++) { ${writeStatements(layout.element, `${at} + ${i} * ${layout.element.size}`, `${value}[${i}]`, depth + 1).join('; ')} }`]
    }
    case 'struct': return [`encode${pascal(layout.name)}(${value}, view, ${at})`]
  }
}

// helpers are emitted only where a generated decoder uses them (readStrings needs readString)
const helpers: Record<string, string> = {
  readString: `
function readString(view: DataView, offset: number, max: number): string {
  let end = offset
  const limit = offset + max
  let ascii = true
  while (end < limit) {
    const byte = view.getUint8(end)
    if (byte === 0) break
    if (byte > 0x7f) ascii = false
    end++
  }
  const bytes = new Uint8Array(view.buffer, view.byteOffset + offset, end - offset)
  const text = String.fromCharCode.apply(null, bytes as unknown as number[])
  if (ascii) return text
  try {
    return decodeURIComponent(escape(text))
  } catch {
    return text
  }
}
`,
  readStrings: `
// exact when the struct says how many bytes are filled (a sibling \`<name>_size\` field), so empty
// arguments survive; otherwise the list ends at the first empty string
function readStrings(view: DataView, offset: number, max: number, filled?: number): string[] {
  const out: string[] = []
  const limit = offset + (filled === undefined ? max : Math.min(filled, max))
  let at = offset
  while (at < limit) {
    if (filled === undefined && view.getUint8(at) === 0) break
    let length = 0
    while (at + length < limit && view.getUint8(at + length) !== 0) length++
    out.push(readString(view, at, length))
    at += length + 1
  }
  return out
}
`,
  writeString: `
function writeString(view: DataView, offset: number, max: number, text: string): void {
  const bytes = new Uint8Array(view.buffer, view.byteOffset + offset, max)
  bytes.fill(0)
  const encoded = unescape(encodeURIComponent(text))
  for (let i = 0; i < Math.min(encoded.length, max - 1); i++) bytes[i] = encoded.charCodeAt(i)
}
`,
}

export function generateTypes(object: ObjectDescription): string {
  const { btf } = object
  const structs = new Map<string, Extract<Layout, { kind: 'struct' }>>()
  const collect = (layout: Layout): void => {
    if (layout.kind === 'struct' && !structs.has(layout.name)) {
      for (const field of layout.fields) collect(field.layout)
      structs.set(layout.name, layout)
    } else if (layout.kind === 'array') {
      collect(layout.element)
    }
  }

  const records = [...btf.records()].map(([map, typeId]) => {
    const layout = btf.layout(typeId)
    collect(layout)
    return { map, layout }
  })

  // key/value types of BTF-defined maps, from the `.maps` section's member pointers
  const mapCodecs: { map: string; key: Layout; value: Layout }[] = []
  for (const v of btf.byName('datasec', '.maps')?.vars ?? []) {
    const variable = btf.types[v.type]
    const def = btf.resolve(variable.type!).type
    const member = (name: string) => def.members?.find((m) => m.name === name)
    const key = member('key'), value = member('value')
    if (key === undefined || value === undefined) continue
    const keyLayout = btf.layout(btf.resolve(key.type).type.type!)
    const valueLayout = btf.layout(btf.resolve(value.type).type.type!)
    collect(keyLayout)
    collect(valueLayout)
    mapCodecs.push({ map: variable.name, key: keyLayout, value: valueLayout })
  }

  // names only: the build reads the ELF's raw BTF, whose .rodata offsets are not laid out yet;
  // function-scoped statics (BPF_SEQ_PRINTF's `<function>.___fmt`) are not settings
  const settings = (btf.byName('datasec', '.rodata')?.vars ?? []).map((v) => btf.types[v.type].name).filter((n) => !n.startsWith('__') && !n.includes('.'))
  const out: string[] = []
  out.push(`// Generated by scripts/generate-types.ts from ${object.name}.bpf.o's BTF. Do not edit: change ${object.name}.h and rebuild.`)
  out.push(`/* eslint-disable */`)
  out.push(`export const objectName = '${object.name}'`)
  out.push(`export const programNames = ${JSON.stringify(object.programs)} as const`)
  out.push(`export const mapNames = ${JSON.stringify(object.maps.map((m) => m.name).filter((n) => !n.includes('.')))} as const`)
  out.push(`export const settingNames = ${JSON.stringify(settings)} as const`)
  const helpersAt = out.length

  for (const [name, layout] of structs) {
    const type = pascal(name)
    out.push(`export interface ${type} {`)
    for (const field of layout.fields) out.push(`  ${field.name}: ${tsType(field.layout)}`)
    out.push(`}`)
    out.push(`export const ${constant(type)}_SIZE = ${layout.size}`)
    const usesEnd = layout.fields.some((f) => f.flexible === true)
    out.push(`export function decode${type}(view: DataView, offset: number${usesEnd ? ', size: number' : ', _size?: number'}): ${type} {`)
    if (usesEnd) out.push(`  const end = offset + size`)
    out.push(`  return {`)
    for (const field of layout.fields) {
      const filledBy = layout.fields.find((f) => f.name === `${field.name}_size` && f.layout.kind === 'scalar' && f.layout.size === 4)?.offset
      out.push(`    ${field.name}: ${readExpr(field.layout, `offset + ${field.offset}`, { ...field, filledBy })},`)
    }
    out.push(`  }`)
    out.push(`}`)
    out.push(`export function encode${type}(value: ${type}, view: DataView, offset: number): void {`)
    for (const field of layout.fields) {
      if (field.flexible === true) continue
      for (const statement of writeStatements(field.layout, `offset + ${field.offset}`, `value.${field.name}`)) out.push(`  ${statement}`)
    }
    out.push(`}`)
  }

  const codec = (layout: Layout): string => {
    if (layout.kind === 'struct') return `{ size: ${layout.size}, decode: decode${pascal(layout.name)}, encode: encode${pascal(layout.name)} }`
    return `{ size: ${layout.size}, decode: (view: DataView, offset: number): ${tsType(layout)} => ${readExpr(layout, 'offset')}, encode: (value: ${tsType(layout)}, view: DataView, offset: number): void => { ${writeStatements(layout, 'offset', 'value').join('; ')} } }`
  }

  out.push(`/** What each ring or perf buffer carries (RECORD() in the C source). */`)
  out.push(`export const records = {`)
  for (const { map, layout } of records) out.push(`  ${map}: { type: '${layout.kind === 'struct' ? layout.name : layout.kind}', size: ${layout.size}, decode: ${layout.kind === 'struct' ? `decode${pascal(layout.name)}` : 'undefined'} },`)
  out.push(`} as const`)
  out.push(`export interface Records {`)
  for (const { map, layout } of records) out.push(`  ${map}: ${tsType(layout)}`)
  out.push(`}`)
  out.push(`/** Key and value codecs of the hash/array maps, for TypedMap. */`)
  out.push(`export const mapCodecs = {`)
  for (const { map, key, value } of mapCodecs) out.push(`  ${map}: { key: ${codec(key)}, value: ${codec(value)} },`)
  out.push(`} as const`)
  const body = out.join('\n')
  const used = Object.keys(helpers).filter((name) => body.includes(`${name}(`) || (name === 'readString' && body.includes('readStrings(')))
  out.splice(helpersAt, 0, ...used.map((name) => helpers[name]))
  return out.join('\n') + '\n'
}

/** bpf/lib/index.types.ts: every object's records by topic ("object:map"). */
export function generateIndex(objects: { name: string; records: string[] }[]): string {
  const out: string[] = [`// Generated by scripts/generate-types.ts. Do not edit.`]
  // an object without ring or perf buffers (maps and iterators only) has no topics to import
  for (const o of objects) if (o.records.length > 0) out.push(`import { records as ${o.name}Records, type Records as ${pascal(o.name)}Records } from './${o.name}.types.ts'`)
  out.push(`/** The event type of each topic a plugin can subscribe to. */`)
  out.push(`export interface Topics {`)
  for (const o of objects) for (const r of o.records) out.push(`  '${o.name}:${r}': ${pascal(o.name)}Records['${r}']`)
  out.push(`}`)
  out.push(`export const decoders = {`)
  for (const o of objects) for (const r of o.records) out.push(`  '${o.name}:${r}': ${o.name}Records.${r}.decode,`)
  out.push(`} as const`)
  out.push(`export const recordSizes = {`)
  for (const o of objects) for (const r of o.records) out.push(`  '${o.name}:${r}': ${o.name}Records.${r}.size,`)
  out.push(`} as const`)
  return out.join('\n') + '\n'
}
