/**
 * Tracepoint records as tracefs formats (`events/<category>/<name>/format`) describe them, for the
 * REPL and for plugins (`periscope/protocols/tracepoint`; it runs in isolates, so no Buffer and no
 * TextDecoder): `parseFormat()` reads a format file's text, and `decodeFields()` turns a raw record
 * the `generic` object copied into named values: integers as bigints by their size and sign,
 * `char` arrays and `__data_loc char[]` as strings, pointers as addresses.
 */
import { utf8 } from './bytes.ts'

export interface FormatField {
  name: string
  /** the C type from the format file, e.g. `const char *`, `int`, `char[16]`, `__data_loc char[]` */
  type: string
  offset: number
  size: number
  signed: boolean
}

export interface TracepointFormat {
  id: number
  /** the fields after the common header (`common_pid` and the like) */
  fields: FormatField[]
  /** bytes of the fixed part of the record, header included */
  recordSize: number
}

/** Parses a format file's text. */
export function parseFormat(text: string): TracepointFormat {
  const id = Number(/^ID: (\d+)$/m.exec(text)?.[1])
  const all = [...text.matchAll(/field:([^;]+);\s*offset:(\d+);\s*size:(\d+);\s*signed:(\d);/g)].map(([, declaration, offset, size, signed]): FormatField => {
    const match = /^(.*?)\s*([A-Za-z_][A-Za-z0-9_]*)\s*(\[[^\]]*\])?$/.exec(declaration!.trim())!
    const [, base, name, array] = match
    return { name: name!, type: array ? `${base}${array}` : base!, offset: Number(offset), size: Number(size), signed: signed === '1' }
  })
  const last = all[all.length - 1]
  return { id, fields: all.filter((f) => !f.name.startsWith('common_')), recordSize: last ? last.offset + last.size : 0 }
}

/** A `__data_loc char[]` field: its text follows the record's fixed part, which the generic program copies apart. */
export const isDataLoc = (field: FormatField): boolean => field.type.startsWith('__data_loc') && field.size === 4

/** The text before the first NUL (all of it without one), as UTF-8. */
export function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0)
  return utf8(bytes, 0, end === -1 ? bytes.length : end)
}

/** How one field is read: chosen once per format, not per record. */
type FieldKind = 'data_loc' | 'chars' | 'i64' | 'u64' | 'i32' | 'u32' | 'i16' | 'u16' | 'i8' | 'u8' | 'skip'

function fieldKind(field: FormatField): FieldKind {
  if (field.type.startsWith('__data_loc')) return 'data_loc'
  if (/\bchar\s*\[/.test(field.type)) return 'chars'
  const size = ({ 8: '64', 4: '32', 2: '16', 1: '8' } as Record<number, string>)[field.size]
  return size === undefined ? 'skip' : `${field.signed ? 'i' : 'u'}${size}` as FieldKind
}

/** The kinds of a format's fields, made once per format (its events are decoded many times). */
const formatKinds = new WeakMap<TracepointFormat, FieldKind[]>()

/** The values of one raw record (`data` starts at the common header, as tracefs offsets do). */
export function decodeFields(format: TracepointFormat, data: Uint8Array): Record<string, bigint | string> {
  let kinds = formatKinds.get(format)
  if (kinds === undefined) formatKinds.set(format, kinds = format.fields.map(fieldKind))
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  const args: Record<string, bigint | string> = {}
  const fields = format.fields
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i]!
    const at = field.offset
    if (at + field.size > data.byteLength) continue
    switch (kinds[i]) {
      case 'data_loc': {
        const loc = view.getUint32(at, true)
        const start = loc & 0xffff
        args[field.name] = cString(data.subarray(start, Math.min(data.byteLength, start + (loc >>> 16))))
        break
      }
      case 'chars': args[field.name] = cString(data.subarray(at, at + field.size)); break
      case 'i64': args[field.name] = view.getBigInt64(at, true); break
      case 'u64': args[field.name] = view.getBigUint64(at, true); break
      case 'i32': args[field.name] = BigInt(view.getInt32(at, true)); break
      case 'u32': args[field.name] = BigInt(view.getUint32(at, true)); break
      case 'i16': args[field.name] = BigInt(view.getInt16(at, true)); break
      case 'u16': args[field.name] = BigInt(view.getUint16(at, true)); break
      case 'i8': args[field.name] = BigInt(view.getInt8(at)); break
      case 'u8': args[field.name] = BigInt(view.getUint8(at)); break
    }
  }
  return args
}

/** generic.h's GENERIC_STRING_SIZE: bytes of each string copied after the raw record */
export const GENERIC_STRING_SIZE = 64

/** Who and when, as the generic programs' records carry them (decoded by the generated codecs). */
export interface RecordTaskFields {
  timestamp_ns: bigint | number
  pid: number
  tid: number
  uid: number
  gid: number
  cpu: number
  comm: string
}

/** A record's who and when as an event's. */
export function taskFields(record: RecordTaskFields): TaskFields {
  return { pid: record.pid, tid: record.tid, uid: record.uid, gid: record.gid, comm: record.comm, cpu: record.cpu, nsecs: BigInt(record.timestamp_ns) }
}

/** What a `generic:events` record carries (bpf/lib/generic.h's struct generic_record, decoded). */
export interface GenericRecordFields extends RecordTaskFields {
  /** bytes of the raw record at the start of `data` */
  size: number
  /** strings copied after the raw record */
  strings: number
  data: Uint8Array
}

/** Who and when, as the generic programs record it with every event. */
export interface TaskFields {
  /** the process (thread group) id */
  pid: number
  tid: number
  uid: number
  gid: number
  comm: string
  cpu: number
  /** boot-clock time, as bpftrace's `nsecs` */
  nsecs: bigint
}

/** One tracepoint hit: who and when, and its fields by name (`args`). */
export interface TracepointEvent extends TaskFields {
  args: Record<string, bigint | string>
}

/**
 * A `generic:events` record as a TracepointEvent: the raw record decoded with its format, and the
 * strings the kernel copied after it under the names of the fields they were asked for, in order.
 */
export function tracepointEvent(format: TracepointFormat, stringFields: readonly string[], record: GenericRecordFields): TracepointEvent {
  const args = decodeFields(format, record.data.subarray(0, record.size))
  for (let i = 0; i < record.strings && i < stringFields.length; i++) {
    const at = record.size + i * GENERIC_STRING_SIZE
    args[stringFields[i]!] = cString(record.data.subarray(at, at + GENERIC_STRING_SIZE))
  }
  const event = taskFields(record) as TracepointEvent
  event.args = args
  return event
}
