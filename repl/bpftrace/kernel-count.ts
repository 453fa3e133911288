/**
 * Counting in the kernel, as bpftrace does: a tracepoint probe whose filter the kernel applies
 * whole (`kernelAppliesWholeFilter`) and whose statements are all `@map[keys] = count()` sends
 * no records. generic.bpf.c adds each event to a per-CPU hash entry per statement, keyed by the
 * statement's slot and the key's bytes (a per-CPU array entry for a statement without a key),
 * and the counts are merged into the one-liner's aggregator when it is printed or cleared
 * (print(@x), clear(@x), interval probes, the end). Only the helpers the keys need run
 * (`comm` and `uid`/`gid` each cost a helper call per event).
 * Through the ring buffer and the evaluator, a busy tracepoint (raw_syscalls:sys_enter under a
 * syscall loop) loses records; counted in the kernel it loses none, as bpftrace loses none.
 *
 * Keys: `comm`, `pid`, `tid`, `uid`, `gid`, `cpu` and the integer fields of the tracepoint's
 * format (`args.fd`), at most GENERIC_MAX_KEY_PARTS, decoded into the same `KeyPart`s the
 * evaluator makes from a record, so the printed maps are the same.
 *
 * A map stays in user space when anything reads it (`@x[k] + 1`, `@x++`) or deletes from it: a
 * read would need the kernel's counts at every event. A tracepoint shared by probes that do not
 * all count, or filter differently, stays in user space whole.
 *
 * The kernel's entries are never deleted: each merge adds what an entry gained since the last
 * merge, so a merge while the probes run loses nothing, and clear(@x) in user space clears what
 * was merged before it.
 */
import { encodeGenericCountConfig, GENERIC_COUNT_CONFIG_SIZE } from '../../bpf/lib/generic.types.ts'
import type { LoadedObject } from '../../runtime/bpf/object.ts'
import type { KeyPart, MapSnapshot } from '../maps.ts'
import { UserSpaceAggregator } from './aggregate.ts'
import type { Expression, Probe, Statement } from './ast.ts'
import type { CheckedProgram } from './check.ts'
import { kernelAppliesWholeFilter, kernelFilter, type KernelFilter } from './kernel-filter.ts'
import type { FormatField, TracepointFormat } from './tracefs.ts'

/** generic.h's GENERIC_MAX_COUNTS, GENERIC_MAX_KEY_PARTS and GENERIC_KEY_PART_SIZE */
const MAX_COUNTS = 4
const MAX_KEY_PARTS = 4
const KEY_PART_SIZE = 16
/** where generic_count_key's parts start (after counter and pad) */
const KEY_PARTS_AT = 8
/** generic.h's GENERIC_KEY_*: what a key part holds */
const KEY_KINDS: Record<string, number> = { comm: 1, pid: 2, tid: 3, uid: 4, gid: 5, cpu: 6 }
const KEY_FIELD = 7
/** generic.h's GENERIC_FILTER_COMM and GENERIC_FILTER_UID, as generic_count_config.needs */
const NEEDS_COMM = 1
const NEEDS_IDS = 2
/**
 * The keys each keyed statement has room for in the kernel: 16 times bpftrace 0.17's
 * BPFTRACE_MAP_KEYS_MAX, as the user-space maps have no bound (the hash takes memory only for
 * the keys it holds). A key past it is reported as a lost event.
 */
const KEYS_PER_STATEMENT = 65536

/** One counted statement: the map it counts in, and where each of its key parts comes from. */
interface CountStatement {
  map: number
  keys: ({ builtin: string } | { field: string })[]
}

/** How one key part of a counted statement is read from the kernel's key bytes. */
type PartDecoder = (bytes: Buffer, at: number) => KeyPart

/** What one tracepoint slot counts: its generic_count_config, and each statement's decoding. */
export interface SlotCounts {
  config: Uint8Array
  statements: { map: number; parts: PartDecoder[] }[]
}

/** The aggregator of a one-liner whose counts may be in the kernel: merged before any print or clear. */
export class KernelCountingAggregator extends UserSpaceAggregator {
  readonly #sources = new Set<() => void>()

  /** `merge` adds what the kernel counted since its last call; the result removes it. */
  addKernelCounts(merge: () => void): () => void {
    this.#sources.add(merge)
    return () => this.#sources.delete(merge)
  }

  /** `n` more events counted under `key`. */
  addCount(map: number, key: KeyPart[], n: bigint): void {
    this.assign(map, key, BigInt.asUintN(64, (super.read(map, key) as bigint) + n))
  }

  #merge(): void {
    for (const merge of this.#sources) merge()
  }

  override snapshot(map: number): MapSnapshot {
    this.#merge()
    return super.snapshot(map)
  }

  override snapshots(): MapSnapshot[] {
    this.#merge()
    return super.snapshots()
  }

  override clear(map: number): void {
    this.#merge()
    super.clear(map)
  }
}

/** Calls `read` with each map `node` reads (as a value, an increment or delete()); print() and clear() do not read. */
function mapsRead(node: unknown, read: (name: string) => void): void {
  if (Array.isArray(node)) return node.forEach((item) => mapsRead(item, read))
  if (typeof node !== 'object' || node === null || !('kind' in node)) return
  const visited = node as Statement | Expression
  if (visited.kind === 'assignMap') return mapsRead([visited.map.keys, visited.value], read)
  if (visited.kind === 'call' && (visited.name === 'print' || visited.name === 'clear')) return mapsRead(visited.args.slice(1), read)
  if (visited.kind === 'map') read(visited.name)
  for (const value of Object.values(visited)) mapsRead(value, read)
}

function isCount(statement: Extract<Statement, { kind: 'assignMap' }>): boolean {
  return !statement.compound && statement.value.kind === 'call' && statement.value.name === 'count' && statement.value.args.length === 0
}

/**
 * The maps the kernel may count: every write to them is `count()`, and nothing reads them or
 * deletes from them (print and clear merge first, so they may).
 */
function countableMaps(checked: CheckedProgram): Set<number> {
  const countable = new Set(checked.maps.flatMap((shape, id) => (shape.kind === 'count' ? [id] : [])))
  const drop = (name: string) => countable.delete(checked.mapIds.get(name)!)
  for (const probe of checked.program.probes) {
    for (const statement of probe.statements) if (statement.kind === 'assignMap' && !isCount(statement)) drop(statement.map.name)
    mapsRead([probe.predicate, probe.statements], drop)
  }
  return countable
}

/** A probe's statements as counted statements, when the kernel can run the whole probe. */
function probeCounts(probe: Probe, checked: CheckedProgram, countable: Set<number>): CountStatement[] | undefined {
  if (probe.statements.length === 0 || !kernelAppliesWholeFilter(probe)) return undefined
  const statements: CountStatement[] = []
  for (const statement of probe.statements) {
    if (statement.kind !== 'assignMap' || !isCount(statement)) return undefined
    const map = checked.mapIds.get(statement.map.name)!
    if (!countable.has(map) || statement.map.keys.length > MAX_KEY_PARTS) return undefined
    const keys: CountStatement['keys'] = []
    for (const key of statement.map.keys) {
      if (key.kind === 'builtin' && key.name in KEY_KINDS) keys.push({ builtin: key.name })
      else if (key.kind === 'field' && key.base.kind === 'builtin' && key.base.name === 'args') keys.push({ field: key.field })
      else return undefined
    }
    statements.push({ map, keys })
  }
  return statements
}

/** A format field the kernel can put in a key: an integer, decoded as `decodeFields` decodes it. */
function integerField(format: TracepointFormat, name: string): FormatField | undefined {
  const field = format.fields.find((f) => f.name === name)
  if (!field || field.type.startsWith('__data_loc') || field.type.includes('[') || field.type.includes('*') || ![1, 2, 4, 8].includes(field.size)) return undefined
  return field
}

function fieldDecoder(field: FormatField): PartDecoder {
  const { size, signed } = field
  if (size === 8) return signed ? (bytes, at) => bytes.readBigInt64LE(at) : (bytes, at) => bytes.readBigUInt64LE(at)
  return signed ? (bytes, at) => BigInt(bytes.readIntLE(at, size)) : (bytes, at) => BigInt(bytes.readUIntLE(at, size))
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * A comm as the evaluator sees a record's: the generated decoder's text (UTF-8 when it is,
 * else one character per byte), cut to 15 bytes as bpftrace's 16-byte string.
 */
function decodeComm(bytes: Buffer, at: number): string {
  const end = bytes.indexOf(0, at)
  const raw = bytes.subarray(at, end === -1 || end > at + KEY_PART_SIZE ? at + KEY_PART_SIZE : end)
  let text = raw.toString('latin1')
  if (raw.some((byte) => byte > 0x7f)) {
    try {
      text = utf8.decode(raw)
    } catch {
      // not UTF-8: one character per byte, as decoded
    }
  }
  return Buffer.byteLength(text) < KEY_PART_SIZE ? text : Buffer.from(text).subarray(0, KEY_PART_SIZE - 1).toString()
}

const builtinDecoder: PartDecoder = (bytes, at) => BigInt(bytes.readUInt32LE(at))

/**
 * What the kernel counts for each tracepoint slot: a slot's probes (by index) all count, with
 * one filter (`filter`, which the kernel applies), and their fields are integers of `format`;
 * undefined for a slot that sends records.
 */
export function planCounts(checked: CheckedProgram, slots: { probes: number[]; filter: KernelFilter; format: TracepointFormat }[]): (SlotCounts | undefined)[] {
  const countable = countableMaps(checked)
  const probes = checked.program.probes.map((probe) => ({ counts: probeCounts(probe, checked, countable), filter: kernelFilter(probe) }))
  return slots.map((slot) => {
    const statements: CountStatement[] = []
    for (const index of slot.probes) {
      const { counts, filter } = probes[index]
      if (!counts || !sameKernelFilter(filter, slot.filter)) return undefined
      statements.push(...counts)
    }
    return statements.length > MAX_COUNTS ? undefined : slotCounts(statements, slot.format)
  })
}

function sameKernelFilter(a: KernelFilter, b: KernelFilter): boolean {
  return a.pid === b.pid && a.comm === b.comm && a.uid === b.uid
}

function slotCounts(statements: CountStatement[], format: TracepointFormat): SlotCounts | undefined {
  const kinds = new Uint8Array(MAX_COUNTS * MAX_KEY_PARTS)
  const sizes = new Uint8Array(MAX_COUNTS * MAX_KEY_PARTS)
  const offsets = new Array<number>(MAX_COUNTS * MAX_KEY_PARTS).fill(0)
  const decoded: SlotCounts['statements'] = []
  let needs = 0
  for (const [i, statement] of statements.entries()) {
    const parts: PartDecoder[] = []
    for (const [j, key] of statement.keys.entries()) {
      const at = i * MAX_KEY_PARTS + j
      if ('builtin' in key) {
        kinds[at] = KEY_KINDS[key.builtin]
        if (key.builtin === 'comm') needs |= NEEDS_COMM
        if (key.builtin === 'uid' || key.builtin === 'gid') needs |= NEEDS_IDS
        parts.push(key.builtin === 'comm' ? decodeComm : builtinDecoder)
        continue
      }
      const field = integerField(format, key.field)
      if (!field) return undefined
      kinds[at] = KEY_FIELD
      sizes[at] = field.size
      offsets[at] = field.offset
      parts.push(fieldDecoder(field))
    }
    decoded.push({ map: statement.map, parts })
  }
  const config = new Uint8Array(GENERIC_COUNT_CONFIG_SIZE)
  encodeGenericCountConfig({ counts: statements.length, needs, kinds, sizes, offsets }, new DataView(config.buffer), 0)
  return { config, statements: decoded }
}

/**
 * Merges what an object counted into `aggregator`: each count's gain since the last merge,
 * summed over CPUs, under the key the evaluator would have made. Statements without a key
 * count in `totals`, by counter; the others in the `counts` hash.
 */
export function countsMerger(object: LoadedObject, slots: (SlotCounts | undefined)[], aggregator: KernelCountingAggregator): () => void {
  const merged = new Map<string, bigint>()
  const totals = object.map('totals')
  const counts = object.map('counts')
  const keyless = slots.flatMap((slot, index) => (slot?.statements ?? []).flatMap((statement, i) => (statement.parts.length === 0 ? [{ counter: index * MAX_COUNTS + i, map: statement.map }] : [])))
  const add = (id: string, perCpu: Uint8Array, map: number, key: () => KeyPart[]) => {
    const values = Buffer.from(perCpu.buffer, perCpu.byteOffset, perCpu.byteLength)
    let total = 0n
    for (let at = 0; at < values.byteLength; at += 8) total += values.readBigUInt64LE(at)
    const before = merged.get(id) ?? 0n
    if (total === before) return
    merged.set(id, total)
    aggregator.addCount(map, key(), total - before)
  }
  return () => {
    for (const { counter, map } of keyless) {
      const perCpu = totals.lookup(new Uint8Array(new Uint32Array([counter]).buffer))
      if (perCpu) add(`total ${counter}`, perCpu, map, () => [])
    }
    for (const [key, perCpu] of counts.entries()) {
      const bytes = Buffer.from(key.buffer, key.byteOffset, key.byteLength)
      const counter = bytes.readUInt32LE(0)
      const statement = slots[Math.trunc(counter / MAX_COUNTS)]!.statements[counter % MAX_COUNTS]
      add(bytes.toString('latin1'), perCpu, statement.map, () => statement.parts.map((decode, j) => decode(bytes, KEY_PARTS_AT + j * KEY_PART_SIZE)))
    }
  }
}

/** The counts hash's size for these slots: KEYS_PER_STATEMENT per keyed statement (1 when none). */
export function countsEntries(slots: (SlotCounts | undefined)[]): number {
  return Math.max(1, slots.reduce((sum, slot) => sum + (slot?.statements.filter((statement) => statement.parts.length > 0).length ?? 0), 0) * KEYS_PER_STATEMENT)
}

/** Fills the object's count_config for the counting slots, once loaded and before attaching. */
export function configureCounts(object: LoadedObject, slots: (SlotCounts | undefined)[]): void {
  const config = object.map('count_config')
  slots.forEach((slot, index) => {
    if (slot) config.update(new Uint8Array(new Uint32Array([index]).buffer), slot.config)
  })
}
