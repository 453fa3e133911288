/**
 * The REPL's map printers and aggregations against Debian's bpftrace 0.17: random maps are
 * filled from literal values in a BEGIN probe by bpftrace, and the same values go through
 * UserSpaceAggregator and the printers; the outputs must be the same bytes.
 *
 * bpftrace orders count, sum, min, max and `@x = value` maps by value with an unstable sort
 * over the kernel's hash order, so the order of equal values changes from run to run: those
 * runs of lines are compared as sets. Everything else, including hist and stats maps with equal
 * totals, is compared byte for byte.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { UserSpaceAggregator } from '../../repl/bpftrace/aggregate.ts'
import type { KeyPart, KeyType, LinearRange, MapKind, MapShape } from '../../repl/maps.ts'
import { exitJson, exitText } from '../../repl/printers.ts'
import { bpftraceVersion, runBpftrace } from './repl-bpftrace.ts'

interface GeneratedMap {
  shape: MapShape
  updates: { key: KeyPart[]; value: bigint; text: string }[]
}

const VALUE_SORTED = new Set<MapKind>(['count', 'sum', 'min', 'max', 'integer'])

const value = fc.oneof(
  fc.bigInt(-20n, 200n),
  fc.integer({ min: 0, max: 62 }).chain((power) => fc.constantFrom(1n << BigInt(power), (1n << BigInt(power)) - 1n, -(1n << BigInt(power)))),
  fc.constantFrom(0n, 0xffffffffn, 0x100000000n, (1n << 63n) - 1n, -(1n << 63n) + 1n),
)
const text = fc.stringMatching(/^[a-z0-9 ._-]{0,12}$/)
const keyTypes = fc.array(fc.constantFrom<KeyType>('integer', 'string'), { maxLength: 2 })
const keyPart = (type: KeyType) => (type === 'integer' ? fc.oneof(fc.bigInt(-3n, 40n), value) : text)
const range = fc.record({ min: fc.integer({ min: 0, max: 100 }), step: fc.integer({ min: 1, max: 50 }), buckets: fc.integer({ min: 1, max: 30 }), remainder: fc.integer({ min: 0, max: 49 }) })
  .map(({ min, step, buckets, remainder }): LinearRange => ({ min, max: min + step * buckets + (remainder % step), step }))

const literal = (part: KeyPart) => (typeof part === 'bigint' ? `${part}` : `"${part}"`)

function generatedMap(name: string) {
  return fc.record({
    kind: fc.constantFrom<MapKind>('count', 'sum', 'min', 'max', 'avg', 'stats', 'hist', 'lhist', 'integer', 'string'),
    keys: keyTypes,
    range,
  }).chain(({ kind, keys, range }) => {
    const update = fc.record({ key: fc.tuple(...keys.map(keyPart)), value, string: text })
    return fc.array(update, { minLength: 1, maxLength: 25 }).map((updates): GeneratedMap => {
      const shape: MapShape = { name, kind, signed: kind === 'sum' || kind === 'integer', keys, ...(kind === 'lhist' ? { range } : {}) }
      return {
        shape,
        updates: updates.map((u) => {
          const target = `${name}${keys.length ? `[${u.key.map(literal).join(', ')}]` : ''}`
          const call = kind === 'count' ? 'count()' : kind === 'integer' ? `${u.value}` : kind === 'string' ? `"${u.string}"` : kind === 'lhist' ? `lhist(${u.value}, ${range.min}, ${range.max}, ${range.step})` : `${kind}(${u.value})`
          return { key: u.key as KeyPart[], value: kind === 'string' ? 0n : u.value, text: `${target} = ${call};`, string: u.string }
        }),
      }
    })
  })
}

const program = fc.uniqueArray(fc.constantFrom('@', '@a', '@b_2', '@count', '@z', '@Zed', '@m1', '@m2'), { minLength: 3, maxLength: 8 }).chain((names) => fc.tuple(...names.map(generatedMap)))

/** What our aggregator and printers print for the same updates. */
function ours(maps: GeneratedMap[], json: boolean): string {
  const aggregator = new UserSpaceAggregator(maps.map((m) => m.shape))
  maps.forEach(({ shape, updates }, i) => {
    for (const update of updates as (GeneratedMap['updates'][number] & { string: string })[]) {
      switch (shape.kind) {
        case 'count': aggregator.count(i, update.key); break
        case 'sum': aggregator.sum(i, update.key, update.value); break
        case 'min': aggregator.min(i, update.key, update.value); break
        case 'max': aggregator.max(i, update.key, update.value); break
        case 'avg': case 'stats': aggregator.avg(i, update.key, update.value); break
        case 'hist': aggregator.hist(i, update.key, update.value); break
        case 'lhist': aggregator.lhist(i, update.key, update.value); break
        case 'integer': aggregator.assign(i, update.key, update.value); break
        case 'string': aggregator.assign(i, update.key, update.string); break
      }
    }
  })
  return json ? exitJson(aggregator.snapshots()) : exitText(aggregator.snapshots())
}

/** Sorts each run of lines of a value-sorted map that share a value (bpftrace's order of ties). */
function tiesSorted(output: string, valueSorted: Set<string>): string {
  const lines = output.split('\n')
  const tie = (line: string) => {
    const match = /^(@[A-Za-z0-9_]*)(?:\[.*\])?: (-?\d+)$/.exec(line)
    return match && valueSorted.has(match[1]) ? `${match[1]} ${match[2]}` : undefined
  }
  const result: string[] = []
  for (let i = 0; i < lines.length;) {
    const group = tie(lines[i])
    let j = i + 1
    while (group !== undefined && j < lines.length && tie(lines[j]) === group) j++
    result.push(...lines.slice(i, j).sort())
    i = j
  }
  return result.join('\n')
}

/** JSON lines with each value-sorted map's entries compared as a set plus their value order. */
function jsonComparable(output: string, valueSorted: Set<string>): unknown[] {
  return output.split('\n').filter(Boolean).map((line) => {
    const parsed = JSON.parse(line) as { type: string; data: Record<string, unknown> }
    const [name] = Object.keys(parsed.data)
    const data = parsed.data[name]
    if (!valueSorted.has(name) || typeof data !== 'object' || data === null) return line
    const entries = Object.entries(data as Record<string, unknown>)
    return { name, values: entries.map(([, v]) => v), entries: entries.map((e) => JSON.stringify(e)).sort() }
  })
}

const programText = (maps: GeneratedMap[]) => `BEGIN { ${maps.flatMap((m) => m.updates.map((u) => u.text)).join(' ')} exit(); }`
const valueSortedNames = (maps: GeneratedMap[]) => new Set(maps.filter((m) => VALUE_SORTED.has(m.shape.kind)).map((m) => m.shape.name))

test('maps of every kind print as bpftrace 0.17 prints them at exit', { timeout: 600_000 }, () => {
  assert.match(bpftraceVersion(), /v0\.17\./)
  let cases = 0
  fc.assert(fc.property(program, (maps) => {
    const expected = runBpftrace(programText(maps))
    fc.pre(expected !== undefined)
    cases++
    const names = valueSortedNames(maps)
    assert.equal(tiesSorted(ours(maps, false), names), tiesSorted(expected!, names), programText(maps))
  }), { numRuns: 40, seed: 1301, endOnFailure: true })
  // bpftrace refuses only a few of the draws
  assert.ok(cases >= 30, `${cases} of 40 programs compared`)
})

test('the same maps in -f json print as bpftrace 0.17 prints them', { timeout: 600_000 }, () => {
  fc.assert(fc.property(program, (maps) => {
    const expected = runBpftrace(programText(maps), { json: true })
    fc.pre(expected !== undefined)
    const names = valueSortedNames(maps)
    // bpftrace prints the "\n\n" before the maps in JSON mode too
    const [ourLines, theirLines] = [ours(maps, true), expected!]
    assert.ok(ourLines.startsWith('\n\n') && theirLines.startsWith('\n\n'), theirLines)
    assert.deepEqual(jsonComparable(ourLines, names), jsonComparable(theirLines, names), programText(maps))
  }), { numRuns: 15, seed: 1302, endOnFailure: true })
})

test('a hist map with more than 16 keys of equal totals keeps bpftrace\'s std::sort order', { timeout: 120_000 }, () => {
  // 40 keys, totals drawn from three values: libstdc++'s introsort leaves ties in an order
  // that only the same algorithm on the same key-byte order reproduces
  const updates: GeneratedMap['updates'] = []
  for (let k = 0; k < 40; k++) {
    for (let n = 0; n <= (k * 7) % 3; n++) updates.push({ key: [BigInt(k * 37 % 53)], value: BigInt(k), text: `@h[${k * 37 % 53}] = hist(${k});` })
  }
  const maps: GeneratedMap[] = [{ shape: { name: '@h', kind: 'hist', signed: false, keys: ['integer'] }, updates }]
  assert.equal(ours(maps, false), runBpftrace(programText(maps)))
})
