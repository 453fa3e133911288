import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { BpfError } from '../../runtime/bpf/errors.ts'
import { BpfMap, BPF_NOEXIST, TypedMap, type Codec } from '../../runtime/bpf/maps.ts'
import { native, type NativeMap } from '../../runtime/bpf/native.ts'
import { ObjectSpec, type LoadedObject } from '../../runtime/bpf/object.ts'
import { compileFixture } from './kernel.ts'

const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer)
const u64 = (n: bigint): Uint8Array => new Uint8Array(new BigUint64Array([n]).buffer)
const readU64 = (b: Uint8Array): bigint => Buffer.from(b).readBigUInt64LE(0)
const cpus = native.versions().possibleCpus

interface Point { x: number; y: number; weight: number }
const pointCodec: Codec<Point> = {
  size: 16,
  decode: (view, offset) => ({ x: view.getUint32(offset, true), y: view.getUint32(offset + 4, true), weight: Number(view.getBigUint64(offset + 8, true)) }),
  encode: (value, view, offset) => {
    view.setUint32(offset, value.x, true)
    view.setUint32(offset + 4, value.y, true)
    view.setBigUint64(offset + 8, BigInt(value.weight), true)
  },
}
const keyCodec: Codec<number> = { size: 4, decode: (view, offset) => view.getUint32(offset, true), encode: (value, view, offset) => view.setUint32(offset, value, true) }

let fixture: string
let object: LoadedObject
before(async () => {
  fixture = compileFixture('maps')
  object = await ObjectSpec.open(fixture).load()
})
after(() => object.close())

test('hash map: create, read, update, delete, iterate (batch and key by key)', () => {
  const points = new TypedMap(object.map('points'), keyCodec, pointCodec)
  for (let i = 0; i < 300; i++) points.update(i, { x: i, y: i * 2, weight: i * 1000 })
  assert.deepEqual(points.lookup(7), { x: 7, y: 14, weight: 7000 })
  points.update(7, { x: 70, y: 140, weight: 1 })
  assert.deepEqual(points.lookup(7), { x: 70, y: 140, weight: 1 })
  assert.throws(() => points.update(7, { x: 0, y: 0, weight: 0 }, BPF_NOEXIST), /EEXIST|exists/)
  assert.equal(points.delete(7), true)
  assert.equal(points.delete(7), false)
  assert.equal(points.lookup(7), undefined)

  const all = new Map([...points.entries()])
  assert.equal(all.size, 299)
  assert.deepEqual(all.get(299), { x: 299, y: 598, weight: 299000 })
  const keys = [...object.map('points').keys()].map((k) => Buffer.from(k).readUInt32LE(0)).sort((a, b) => a - b)
  assert.deepEqual(keys, [...Array(300).keys()].filter((k) => k !== 7))
})

test('array map: fixed slots, zero-filled, delete is refused', () => {
  const slots = object.map('slots')
  assert.equal(readU64(slots.lookup(u32(3))!), 0n)
  slots.update(u32(3), u64(99n))
  assert.equal(readU64(slots.lookup(u32(3))!), 99n)
  assert.equal([...slots.entries()].length, 8)
  assert.throws(() => slots.update(u32(8), u64(1n)), /E2BIG|argument list too long/i)
  assert.throws(() => slots.delete(u32(3)), /EINVAL|Invalid argument/)
})

test('per-CPU maps: one value per possible CPU', () => {
  const counts = object.map('per_cpu_counts')
  const value = new Uint8Array(8 * cpus)
  for (let cpu = 0; cpu < cpus; cpu++) new DataView(value.buffer).setBigUint64(cpu * 8, BigInt(cpu + 10), true)
  counts.update(u32(1), value)
  const perCpu = counts.lookupPerCpu(u32(1))
  assert.equal(perCpu.length, cpus)
  assert.deepEqual(perCpu.map(readU64), Array.from({ length: cpus }, (_, cpu) => BigInt(cpu + 10)))
  assert.throws(() => counts.update(u32(2), new Uint8Array(8)), /expected \d+ \(\d+ CPUs × 8\)/)

  // 4-byte values are padded to 8 per CPU
  const slots = object.map('per_cpu_slots')
  const padded = new Uint8Array(8 * cpus)
  new DataView(padded.buffer).setUint32(0, 5, true)
  slots.update(u32(0), padded)
  assert.deepEqual(slots.lookupPerCpu(u32(0)).map((v) => v.byteLength), Array(cpus).fill(4))
  assert.equal(Buffer.from(slots.lookupPerCpu(u32(0))[0]).readUInt32LE(0), 5)
  assert.equal([...slots.entries()].length, 4)
})

test('LRU hash evicts instead of failing when full', () => {
  const recent = object.map('recent')
  for (let i = 0n; i < 200n; i++) recent.update(u64(i), u64(i * 2n))
  const entries = [...recent.entries()]
  assert.ok(entries.length <= 16 + cpus * 8, `LRU kept ${entries.length}`)
  assert.equal(readU64(recent.lookup(u64(199n))!), 398n)
})

test('stack trace map is readable by id', () => {
  const stacks = object.map('stacks')
  assert.equal(stacks.info.type, 'stack_trace')
  assert.equal(stacks.lookup(u32(12345)), undefined)
})

test('wrong key sizes and unknown maps are refused with the expected sizes', () => {
  assert.throws(() => object.map('points').lookup(new Uint8Array(8)), /key is 8 bytes, expected 4/)
  assert.throws(() => object.map('nope'), /unknown map "nope" in .*maps\.bpf\.o; it has: .*points/)
  assert.throws(() => new TypedMap(object.map('slots'), keyCodec, pointCodec), /codec sizes .* do not match/)
})

/**
 * The fixture's `points` map, loaded in its own object, whose kernel batch lookup answers EINVAL
 * from call `failAt` on (counting from 1), as a kernel without batch support for the map type
 * would: everything else goes to the kernel.
 */
async function pointsFailingBatchAt(failAt: number) {
  const raw = new native.Object(fixture)
  await raw.load()
  const real = raw.maps().find((m) => m.describe().name === 'points')!
  const calls = { batch: 0 }
  const failing: NativeMap = Object.create(real, {
    lookupBatch: {
      value: (token: Uint8Array | null, count: number) => {
        if (++calls.batch >= failAt) throw new BpfError('bpf_map_lookup_batch points: Invalid argument', { op: 'bpf_map_lookup_batch points', errno: 22, code: 'EINVAL' })
        return real.lookupBatch(token, count)
      },
    },
  })
  for (const name of ['describe', 'lookup', 'update', 'delete', 'nextKey'] as const) Object.defineProperty(failing, name, { value: real[name].bind(real) })
  return { map: new BpfMap(failing, 'points'), calls, close: () => raw.close() }
}

const keysOf = (entries: Iterable<[Uint8Array, Uint8Array]>) => [...entries].map(([k]) => Buffer.from(k).readUInt32LE(0))

test('a batch lookup that fails after the first chunk falls back to the key walk without yielding an entry twice', async () => {
  const points = await pointsFailingBatchAt(2)
  try {
    for (let i = 0; i < 300; i++) points.map.update(u32(i), new Uint8Array(16))
    const keys = keysOf(points.map.entries(100))
    assert.equal(points.calls.batch, 2, 'the first chunk came from a batch lookup, the second failed')
    assert.equal(keys.length, 300, 'every entry exactly once')
    assert.deepEqual([...keys].sort((a, b) => a - b), [...Array(300).keys()])
  } finally {
    points.close()
  }
})

test('a map whose batch lookup fails at once is walked key by key, and batch lookup is not tried again', async () => {
  const points = await pointsFailingBatchAt(1)
  try {
    for (let i = 0; i < 300; i++) points.map.update(u32(i), new Uint8Array(16))
    assert.equal(keysOf(points.map.entries(100)).length, 300)
    assert.equal(keysOf(points.map.entries(100)).length, 300)
    assert.equal(points.calls.batch, 1)
  } finally {
    points.close()
  }
})
