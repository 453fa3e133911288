/**
 * The top-N table of a profile by function, as `go tool pprof -top` prints it: `flat` is what a
 * function spent itself (it was the sampled leaf), `cum` what it spent with its callees (it was
 * anywhere on the stack, counted once per sample however often it recurses), each with its share
 * of the total, and `sum%` the running total of `flat%` down the table.
 *
 * A function is its name in its module (two `main`s in two programs are two rows); a frame left
 * unnamed goes by its module and offset (runtime/telemetry/profiles.ts `frameName`).
 *
 *   formatTopTable(topFunctions(profile), { rows: 20 })
 */
import type { AggregatedProfile } from '../telemetry/profiles.ts'
import { frameName } from '../telemetry/profiles.ts'

export interface TopRow {
  function: string
  /** The file the function is in (its module's base name), '' when the frame had no mapping. */
  module: string
  flat: number
  cum: number
}

export interface TopFunctions {
  /** Every function, by flat value, then cum value, then name. */
  rows: TopRow[]
  /** The sum of the sample values: what the percentages are of. */
  total: number
  /** Samples taken (the first value, when it is a count), or undefined. */
  samples: number | undefined
  /** The value's type and unit, e.g. ['cpu', 'nanoseconds']. */
  valueType: readonly [string, string]
}

/** Sums a profile by function; `valueIndex` (default the last sample type, as pprof does) picks the value. */
export function topFunctions(profile: AggregatedProfile, valueIndex = profile.sampleTypes.length - 1): TopFunctions {
  const valueType = profile.sampleTypes[valueIndex]
  if (valueType === undefined) throw new RangeError(`topFunctions: the profile has ${profile.sampleTypes.length} sample types, no index ${valueIndex}`)
  const byKey = new Map<string, TopRow>()
  const rowOf = (frame: AggregatedProfile['samples'][number]['frames'][number]): TopRow => {
    const name = frameName(frame)
    const file = frame.mapping?.file ?? ''
    const module = file.slice(file.lastIndexOf('/') + 1)
    const key = `${name}\0${module}`
    let row = byKey.get(key)
    if (row === undefined) byKey.set(key, (row = { function: name, module, flat: 0, cum: 0 }))
    return row
  }
  let total = 0
  const counted = new Set<TopRow>()
  for (const sample of profile.samples) {
    const value = sample.values[valueIndex]
    total += value
    rowOf(sample.frames[0]).flat += value
    counted.clear()
    for (const frame of sample.frames) {
      const row = rowOf(frame)
      if (counted.has(row)) continue
      counted.add(row)
      row.cum += value
    }
  }
  const rows = [...byKey.values()].sort((a, b) => b.flat - a.flat || b.cum - a.cum || a.function.localeCompare(b.function))
  const countsSamples = profile.sampleTypes[0]?.[1] === 'count'
  const samples = countsSamples ? profile.samples.reduce((sum, sample) => sum + sample.values[0], 0) : undefined
  return { rows, total, samples, valueType }
}

/** A value in its unit, short as pprof writes it: `1.96s`, `340ms`, `12.50MB`, `245`. */
export function formatValue(value: number, unit: string): string {
  if (unit === 'nanoseconds') {
    if (value === 0) return '0'
    for (const [scale, suffix] of [[1e9, 's'], [1e6, 'ms'], [1e3, 'us']] as const) {
      if (Math.abs(value) >= scale) return `${trim(value / scale)}${suffix}`
    }
    return `${value}ns`
  }
  if (unit === 'bytes') {
    if (value === 0) return '0'
    for (const [scale, suffix] of [[2 ** 30, 'GB'], [2 ** 20, 'MB'], [2 ** 10, 'kB']] as const) {
      if (Math.abs(value) >= scale) return `${trim(value / scale)}${suffix}`
    }
    return `${value}B`
  }
  return String(Math.round(value))
}

/** Up to two decimals, without trailing zeros: 1.5, 340, 12.34. */
function trim(value: number): string {
  return String(Number(value.toFixed(2)))
}

const percent = (part: number, whole: number): string => (whole === 0 ? '0%' : `${(part * 100 / whole).toFixed(2)}%`)

/**
 * The table as text: a summary line, then the `rows` biggest functions by flat value (default 20),
 * columns as in `go tool pprof -top`, and each function's module after it.
 */
export function formatTopTable(top: TopFunctions, options: { rows?: number } = {}): string {
  const shown = top.rows.slice(0, options.rows ?? 20)
  const [type, unit] = top.valueType
  const value = (v: number): string => formatValue(v, unit)
  const shownFlat = shown.reduce((sum, row) => sum + row.flat, 0)
  const samples = top.samples === undefined ? '' : ` in ${top.samples} sample${top.samples === 1 ? '' : 's'}`
  const lines = [
    `Showing ${shown.length} of ${top.rows.length} functions, ${value(shownFlat)} (${percent(shownFlat, top.total)}) of ${value(top.total)} ${type}${samples}`,
  ]
  const table: string[][] = [['flat', 'flat%', 'sum%', 'cum', 'cum%', 'function', 'module']]
  let sum = 0
  for (const row of shown) {
    sum += row.flat
    table.push([value(row.flat), percent(row.flat, top.total), percent(sum, top.total), value(row.cum), percent(row.cum, top.total), row.function, row.module])
  }
  const widths = table[0].map((_, column) => Math.max(...table.map((cells) => cells[column].length)))
  for (const cells of table) {
    const numbers = cells.slice(0, 5).map((cell, column) => cell.padStart(widths[column])).join(' ')
    lines.push(`${numbers}  ${cells[5].padEnd(widths[5])}  ${cells[6]}`.trimEnd())
  }
  return lines.join('\n')
}
