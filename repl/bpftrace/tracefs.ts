/**
 * Tracepoint formats from tracefs (`events/<category>/<name>/format`), for one-liners: the
 * fields `args.name` may name (`tracefsFields()` feeds `check()`), the record size to configure
 * in `generic.bpf.c`, and `decodeFields()`, which turns a raw record that `generic.bpf.c`
 * copied into the `args` of a `TraceEvent`: integers as bigints by their size and sign, `char`
 * arrays and `__data_loc char[]` as strings, pointers as addresses.
 */
import { readFileSync } from 'node:fs'
import type { TracepointField } from './check.ts'

export interface FormatField extends TracepointField {
  offset: number
}

export interface TracepointFormat {
  id: number
  /** the fields after the common header (`common_pid` and the like) */
  fields: FormatField[]
  /** bytes of the fixed part of the record, header included */
  recordSize: number
}

export const TRACEFS = '/sys/kernel/tracing'

/** Parses a format file's text. */
export function parseFormat(text: string): TracepointFormat {
  const id = Number(/^ID: (\d+)$/m.exec(text)?.[1])
  const all = [...text.matchAll(/field:([^;]+);\s*offset:(\d+);\s*size:(\d+);\s*signed:(\d);/g)].map(([, declaration, offset, size, signed]): FormatField => {
    const match = /^(.*?)\s*([A-Za-z_][A-Za-z0-9_]*)\s*(\[[^\]]*\])?$/.exec(declaration.trim())!
    const [, base, name, array] = match
    return { name, type: array ? `${base}${array}` : base, offset: Number(offset), size: Number(size), signed: signed === '1' }
  })
  const last = all[all.length - 1]
  return { id, fields: all.filter((f) => !f.name.startsWith('common_')), recordSize: last ? last.offset + last.size : 0 }
}

/** The format of `category:name`, or undefined when the tracepoint does not exist. */
export function readFormat(category: string, name: string, root = TRACEFS): TracepointFormat | undefined {
  try {
    return parseFormat(readFileSync(`${root}/events/${category}/${name}/format`, 'utf8'))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

/** `CheckOptions.tracepointFields` over tracefs. */
export function tracefsFields(root = TRACEFS): (category: string, name: string) => TracepointField[] | undefined {
  return (category, name) => readFormat(category, name, root)?.fields
}

/** The text before the first NUL (all of it without one). */
export function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0)
  return Buffer.from(bytes.subarray(0, end === -1 ? bytes.length : end)).toString()
}

/** The `args` of one raw record (`data` starts at the common header, as tracefs offsets do). */
export function decodeFields(format: TracepointFormat, data: Uint8Array): Record<string, bigint | string> {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  const args: Record<string, bigint | string> = {}
  for (const field of format.fields) {
    if (field.offset + field.size > data.byteLength) continue
    if (field.type.startsWith('__data_loc')) {
      const loc = view.getUint32(field.offset, true)
      const at = loc & 0xffff
      args[field.name] = cString(data.subarray(at, Math.min(data.byteLength, at + (loc >>> 16))))
    } else if (/\bchar\s*\[/.test(field.type)) {
      args[field.name] = cString(data.subarray(field.offset, field.offset + field.size))
    } else if (field.size === 8) {
      args[field.name] = field.signed ? view.getBigInt64(field.offset, true) : view.getBigUint64(field.offset, true)
    } else if (field.size === 4) {
      args[field.name] = BigInt(field.signed ? view.getInt32(field.offset, true) : view.getUint32(field.offset, true))
    } else if (field.size === 2) {
      args[field.name] = BigInt(field.signed ? view.getInt16(field.offset, true) : view.getUint16(field.offset, true))
    } else if (field.size === 1) {
      args[field.name] = BigInt(field.signed ? view.getInt8(field.offset) : view.getUint8(field.offset))
    }
  }
  return args
}
