// A cached function table costs its typed arrays and names, not the ranges it was built from:
// the Symbolizer keeps hundreds of tables, so whatever one keeps by mistake is kept hundreds of times.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { ElfFile } from '../../runtime/symbols/elf.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

test('a function table keeps no per-symbol objects: node\'s ~100,000 functions hold under 2 MB of JS heap a table', () => {
  const tables = []
  gc()
  const before = process.memoryUsage().heapUsed
  for (let i = 0; i < 4; i++) {
    const elf = ElfFile.open(process.execPath)
    try {
      tables.push(elf.functionTable())
    } finally {
      elf.close()
    }
  }
  gc()
  const perTable = (process.memoryUsage().heapUsed - before) / tables.length
  assert.ok(tables[0]!.size > 50_000, `node has ${tables[0]!.size} functions`)
  // the table's names array is 8 bytes a symbol; the ranges it was built from were 72 (8 MB for node)
  assert.ok(perTable < 2_000_000, `each table of ${tables[0]!.size} functions holds ${(perTable / 1e6).toFixed(1)} MB of heap`)
})
