// A cached function table costs its typed arrays and the names looked up, not the ranges it was
// built from, nor (as the symbolizer keeps it) a large string table: the Symbolizer keeps hundreds
// of tables, so whatever one keeps by mistake is kept hundreds of times.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { ElfFile } from '../../runtime/symbols/elf.ts'
import type { SymbolTable } from '../../runtime/symbols/symbol-table.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** Memory after GC; array buffers are freed after the collection that found them dead, by a task of their own. */
async function settled(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 3; i++) {
    gc()
    await setTimeout(50)
  }
  return process.memoryUsage()
}

/** JS heap and array buffer bytes each of 4 tables of node holds, built with `namesOnDisk`. */
async function perTable(namesOnDisk: boolean): Promise<{ heap: number; buffers: number; size: number }> {
  const tables: SymbolTable[] = []
  const before = await settled()
  for (let i = 0; i < 4; i++) {
    const elf = ElfFile.open(process.execPath)
    try {
      tables.push(elf.functionTable({ namesOnDisk }))
    } finally {
      elf.close()
    }
  }
  const after = await settled()
  for (const table of tables) table.release()
  return { heap: (after.heapUsed - before.heapUsed) / 4, buffers: (after.arrayBuffers - before.arrayBuffers) / 4, size: tables[0]!.size }
}

test('a function table keeps no per-symbol objects: node\'s ~100,000 functions hold under 2 MB of JS heap a table', async () => {
  const { heap, size } = await perTable(false)
  assert.ok(size > 50_000, `node has ${size} functions`)
  // the ranges it was built from were 72 bytes a symbol (8 MB for node)
  assert.ok(heap < 2_000_000, `each table of ${size} functions holds ${(heap / 1e6).toFixed(1)} MB of heap`)
})

test('the symbolizer\'s table of node keeps its string tables (14 MB) on disk: its buffers are its three typed arrays, and its heap as small', async () => {
  const inMemory = await perTable(false), onDisk = await perTable(true)
  // starts and ends (8 bytes a function) and name ids (4)
  const typedArrays = onDisk.size * 20
  assert.ok(Math.abs(onDisk.buffers - typedArrays) < 100_000, `${(onDisk.buffers / 1e6).toFixed(1)} MB of buffers a table, ${(typedArrays / 1e6).toFixed(1)} MB in typed arrays`)
  assert.ok(inMemory.buffers - onDisk.buffers > 10_000_000, `in memory ${(inMemory.buffers / 1e6).toFixed(1)} MB a table`)
  // and what closes its file keeps nothing of the build (the ranges: 10 MB of heap for node)
  assert.ok(onDisk.heap < 2_000_000, `each table holds ${(onDisk.heap / 1e6).toFixed(1)} MB of heap`)
})
