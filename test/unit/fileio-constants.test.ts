// The constants the file-io plugin reads the fileio object with (runtime/protocols/fileio.ts) are
// the kernel's: each equals the enum value or #define of the same name in bpf/lib/fileio.h, and
// the latency histogram has one boundary between each two of the kernel's buckets.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { FILEIO_COUNTS_SIZE } from '../../bpf/lib/fileio.types.ts'
import * as fileio from '../../runtime/protocols/fileio.ts'

test('every constant equals the value of the same name in fileio.h', () => {
  const header = readFileSync(new URL('../../bpf/lib/fileio.h', import.meta.url), 'utf8')
  const values = new Map<string, number>()
  for (const [, name, value] of header.matchAll(/^\s*([A-Z_0-9]+)\s*=\s*(\d+)\s*,/gm)) values.set(name!, Number(value))
  for (const [, name, value] of header.matchAll(/^#define\s+([A-Z_0-9]+)\s+(\d+)$/gm)) values.set(name!, Number(value))
  const constants = Object.entries(fileio).filter(([name, value]) => /^[A-Z_0-9]+$/.test(name) && typeof value === 'number')
  assert.equal(constants.length, 13)
  for (const [name, value] of constants) assert.equal(value, values.get(name), `${name} in fileio.h`)
})

test('the latency histogram has a boundary between each two buckets, 1 µs to 2^22 µs, and the counts hold them all', () => {
  assert.equal(fileio.fileioLatencyBoundaries.length + 1, fileio.FILEIO_LATENCY_BUCKETS)
  assert.equal(fileio.fileioLatencyBoundaries[0], 1e-6)
  assert.equal(fileio.fileioLatencyBoundaries.at(-1), 2 ** 22 / 1e6)
  // ops, errors, latency sums and buckets per op, and bytes read and written: 8 bytes each
  assert.equal(FILEIO_COUNTS_SIZE, (fileio.FILEIO_OPS * (3 + fileio.FILEIO_LATENCY_BUCKETS) + 2) * 8)
})
