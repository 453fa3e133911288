/**
 * bpftrace 0.17's output of maps, byte for byte: the text form (`TextOutput` in its
 * `src/output.cpp`) and the `-f json` form (`JsonOutput`).
 *
 * - `mapText(map)` / `mapJson(map)`: what `print(@map)` prints, and what bpftrace prints for
 *   that map when it exits. The text of an empty map is its blank line(s); its JSON is nothing.
 * - `exitText(maps)` / `exitJson(maps)`: everything printed at exit: two newlines, then every
 *   map in name order.
 * - `histText`, `lhistText`, `statsText`: one value's lines, for stream printers that have no map.
 *
 * 0.17's quirks are kept on purpose, so output compares equal to Debian's bpftrace: the `@` bar
 * length is computed in single-precision floats, a hist's JSON bounds above 2^30 are computed
 * in 32-bit ints (`{"min": -2147483648, "max": 0}` for [2G, 4G)), and JSON escapes each byte
 * of a non-ASCII character as `\uffffffXX`.
 */
import { average, orderedEntries, type KeyPart, type LinearRange, type MapEntry, type MapSnapshot } from './maps.ts'

const BAR_WIDTH = 52

/** `hist_index_label`: 1, 2, 4 ... 512, then 1K ... 512K, 1M, 1G, 1T. */
function powerLabel(power: number): string {
  for (const [from, suffix] of [[40, 'T'], [30, 'G'], [20, 'M'], [10, 'K']] as const) {
    if (power >= from) return `${1 << (power - from)}${suffix}`
  }
  return `${1 << power}`
}

/** `lhist_index_label`: exact multiples of 1M and 1K get a suffix. */
function linearLabel(value: number): string {
  if (value === 0) return '0'
  if (value % 1048576 === 0) return `${Math.trunc(value / 1048576)}M`
  if (value % 1024 === 0) return `${Math.trunc(value / 1024)}K`
  return `${value}`
}

/** The `@` bar: `count / (float)max * 52` in single precision, truncated, as bpftrace computes it. */
function bar(count: bigint, max: bigint): string {
  const ratio = Math.fround(Math.fround(Number(count)) / Math.fround(Number(max)))
  const width = Math.trunc(Math.fround(ratio * BAR_WIDTH))
  return '@'.repeat(Math.max(0, width)).padEnd(BAR_WIDTH)
}

function bucketLine(label: string, count: bigint, max: bigint): string {
  return `${label.padEnd(16)}${`${count}`.padStart(8)} |${bar(count, max)}|\n`
}

const bucket = (buckets: bigint[], i: number) => buckets[i] ?? 0n

/** Index of the first and last non-empty bucket (`hist_prepare`), or undefined when all are 0. */
function histBounds(buckets: bigint[]): { first: number; last: number; max: bigint } | undefined {
  let first = -1
  let last = -1
  let max = 0n
  buckets.forEach((count, i) => {
    // bpftrace reads each count into an int
    const value = BigInt.asIntN(32, count)
    if (value > 0n) {
      if (first === -1) first = i
      last = i
    }
    if (value > max) max = value
  })
  return first === -1 ? undefined : { first, last, max }
}

function histLabel(i: number): string {
  if (i === 0) return '(..., 0)'
  if (i === 1) return '[0]'
  if (i === 2) return '[1]'
  return `[${powerLabel(i - 2)}, ${powerLabel(i - 1)})`
}

/** A hist's lines: from the first to the last non-empty bucket; '' when it is empty. */
export function histText(buckets: bigint[]): string {
  const bounds = histBounds(buckets)
  if (!bounds) return ''
  let text = ''
  for (let i = bounds.first; i <= bounds.last; i++) text += bucketLine(histLabel(i), bucket(buckets, i), bounds.max)
  return text
}

/** `lhist_prepare`: the non-empty span and the largest count, or undefined when all are 0. */
function lhistBounds(buckets: bigint[], range: LinearRange): { first: number; last: number; max: bigint; inRange: number } | undefined {
  const inRange = Math.trunc((range.max - range.min) / range.step)
  let max = 0n
  let any = false
  for (const count of buckets) {
    const value = BigInt.asIntN(32, count)
    if (value !== 0n) any = true
    if (value > max) max = value
  }
  if (!any) return undefined
  let first = -1
  let last = 0
  for (let i = 0; i <= inRange + 1; i++) {
    if (bucket(buckets, i) > 0n) {
      if (first === -1) first = i
      last = i
    }
  }
  return { first: first === -1 ? 0 : first, last, max, inRange }
}

function lhistLabel(i: number, range: LinearRange, inRange: number): string {
  if (i === 0) return `(..., ${linearLabel(range.min)})`
  if (i === inRange + 1) return `[${linearLabel(range.max)}, ...)`
  return `[${linearLabel((i - 1) * range.step + range.min)}, ${linearLabel(i * range.step + range.min)})`
}

/** An lhist's lines, from the first to the last non-empty bucket; '' when it is empty. */
export function lhistText(buckets: bigint[], range: LinearRange): string {
  const bounds = lhistBounds(buckets, range)
  if (!bounds) return ''
  let text = ''
  for (let i = bounds.first; i <= bounds.last; i++) text += bucketLine(lhistLabel(i, range, bounds.inRange), bucket(buckets, i), bounds.max)
  return text
}

/** A stats() value: `count 2, average 7, total 15`. */
export function statsText(value: bigint[]): string {
  return `count ${value[0]}, average ${average(value)}, total ${BigInt.asIntN(64, value[1])}`
}

function keyParts(key: KeyPart[]): string[] {
  return key.map((part) => (typeof part === 'bigint' ? `${BigInt.asIntN(64, part)}` : part))
}

function scalarText(map: MapSnapshot, value: MapEntry['value']): string {
  switch (map.kind) {
    case 'count':
      return `${BigInt.asUintN(64, value as bigint)}`
    case 'sum':
    case 'integer':
      return `${map.signed ? BigInt.asIntN(64, value as bigint) : BigInt.asUintN(64, value as bigint)}`
    case 'max':
      return `${BigInt.asUintN(64, value as bigint)}`
    case 'min':
      return `${BigInt.asIntN(64, value as bigint)}`
    case 'avg':
      return `${average(value as bigint[])}`
    case 'stats':
      return statsText(value as bigint[])
    case 'hist':
      return histText(value as bigint[])
    case 'lhist':
      return lhistText(value as bigint[], map.range!)
    case 'string':
      return value as string
  }
}

/**
 * The entries `print(@map, top)` prints: the last `top` in print order (the largest), all when
 * `top` is 0. bpftrace ignores `top` for avg() and stats() maps (with a warning); callers that
 * want bpftrace's output pass 0 there.
 */
function printedEntries(map: MapSnapshot, top: number): MapEntry[] {
  const ordered = orderedEntries(map)
  return top > 0 ? ordered.slice(-top) : ordered
}

/** What bpftrace prints for `print(@map)` (`print(@map, top)` with `top`), and for the map at exit. */
export function mapText(map: MapSnapshot, top = 0): string {
  const keyText = (key: KeyPart[]) => (map.keys.length === 0 ? map.name : `${map.name}[${keyParts(key).join(', ')}]`)
  const histogram = map.kind === 'hist' || map.kind === 'lhist'
  const elements = printedEntries(map, top).map((entry) => `${keyText(entry.key)}: ${histogram ? '\n' : ''}${scalarText(map, entry.value)}`)
  const body = elements.join('\n')
  return map.kind === 'avg' || map.kind === 'stats' ? `${body}\n\n` : `${body}\n`
}

/** `JsonOutput::json_escape`, byte by byte: bytes from 0x80 up are (signed) chars below 0x20. */
export function jsonEscape(text: string): string {
  let escaped = ''
  for (const byte of Buffer.from(text)) {
    if (byte === 0x22) escaped += '\\"'
    else if (byte === 0x5c) escaped += '\\\\'
    else if (byte === 0x0a) escaped += '\\n'
    else if (byte === 0x0d) escaped += '\\r'
    else if (byte === 0x09) escaped += '\\t'
    else if (byte <= 0x1f) escaped += `\\u${byte.toString(16).padStart(4, '0')}`
    else if (byte >= 0x80) escaped += `\\u${((0xffffff00 | byte) >>> 0).toString(16)}`
    else escaped += String.fromCharCode(byte)
  }
  return escaped
}

function histJson(buckets: bigint[]): string {
  const bounds = histBounds(buckets)
  if (!bounds) return '[]'
  const items: string[] = []
  for (let i = bounds.first; i <= bounds.last; i++) {
    let limits: string
    if (i === 0) limits = '"max": -1, '
    else if (i === 1) limits = '"min": 0, "max": 0, '
    else if (i === 2) limits = '"min": 1, "max": 1, '
    // 32-bit int shifts, as bpftrace computes them
    else limits = `"min": ${1 << (i - 2)}, "max": ${((1 << (i - 1)) - 1) | 0}, `
    items.push(`{${limits}"count": ${bucket(buckets, i)}}`)
  }
  return `[${items.join(', ')}]`
}

function lhistJson(buckets: bigint[], range: LinearRange): string {
  const bounds = lhistBounds(buckets, range)
  if (!bounds) return '[]'
  const items: string[] = []
  for (let i = bounds.first; i <= bounds.last; i++) {
    let limits: string
    if (i === 0) limits = `"max": ${range.min - 1}, `
    else if (i === bounds.inRange + 1) limits = `"min": ${range.max}, `
    else limits = `"min": ${(i - 1) * range.step + range.min}, "max": ${i * range.step + range.min - 1}, `
    items.push(`{${limits}"count": ${bucket(buckets, i)}}`)
  }
  return `[${items.join(', ')}]`
}

function valueJson(map: MapSnapshot, value: MapEntry['value']): string {
  switch (map.kind) {
    case 'string':
      return `"${jsonEscape(value as string)}"`
    case 'hist':
      return histJson(value as bigint[])
    case 'lhist':
      return lhistJson(value as bigint[], map.range!)
    case 'stats': {
      const [count, total] = value as bigint[]
      return `{"count": ${count}, "average": ${average(value as bigint[])}, "total": ${BigInt.asIntN(64, total)}}`
    }
    default:
      return scalarText(map, value)
  }
}

/** The `-f json` line for `print(@map)` (`print(@map, top)` with `top`) and for the map at exit; '' for an empty map. */
export function mapJson(map: MapSnapshot, top = 0): string {
  if (map.entries.length === 0) return ''
  const type = map.kind === 'hist' || map.kind === 'lhist' ? 'hist' : map.kind === 'avg' || map.kind === 'stats' ? 'stats' : 'map'
  const elements = printedEntries(map, top).map((entry) => {
    const value = valueJson(map, entry.value)
    return map.keys.length === 0 ? value : `"${jsonEscape(keyParts(entry.key).join(','))}": ${value}`
  })
  const body = map.keys.length === 0 ? elements.join(', ') : `{${elements.join(', ')}}`
  return `{"type": "${type}", "data": {"${jsonEscape(map.name)}": ${body}}}\n`
}

const byName = (maps: MapSnapshot[]) => [...maps].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)))

/** What bpftrace prints when it exits: two newlines, then each map, in name order. */
export function exitText(maps: MapSnapshot[]): string {
  return `\n\n${byName(maps).map((map) => mapText(map)).join('')}`
}

/** `exitText` for `-f json` (bpftrace prints the two newlines in JSON mode too). */
export function exitJson(maps: MapSnapshot[]): string {
  return `\n\n${byName(maps).map((map) => mapJson(map)).join('')}`
}

/** A printf line in JSON mode: `{"type": "printf", "data": "..."}`. */
export function printfJson(text: string): string {
  return `{"type": "printf", "data": "${jsonEscape(text)}"}\n`
}
