import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { BtfTypes } from '../../runtime/bpf/btf.ts'
import { native } from '../../runtime/bpf/native.ts'
import { generateTypes } from '../../scripts/generate-types.ts'

const lib = fileURLToPath(new URL('../../bpf/lib/', import.meta.url))
const objects = readdirSync(lib).filter((f) => f.endsWith('.bpf.o')).map((f) => f.slice(0, -'.bpf.o'.length))

test('every generated decoder has the size of its BTF struct, field by field', async () => {
  let checked = 0
  for (const name of objects) {
    const generated = await import(join(lib, `${name}.types.ts`)) as Record<string, unknown>
    const btf = new BtfTypes(native.btfTypes(join(lib, `${name}.bpf.o`)))
    for (const type of btf.types.filter((t) => t.kind === 'struct' && t.name !== '')) {
      const constant = `${type.name.toUpperCase()}_SIZE`
      if (!(constant in generated)) continue
      assert.equal(generated[constant], type.size, `${name}: ${constant}`)
      checked++
    }
    const records = generated.records as Record<string, { type: string; size: number }>
    for (const [map, typeId] of btf.records()) {
      assert.equal(records[map].size, btf.types[typeId].size, `${name}: record of ${map}`)
      assert.equal(records[map].type, btf.types[typeId].name)
    }
  }
  assert.ok(checked >= 4, `only ${checked} structs checked`)
})

test('decoders read what the encoders wrote, for every record struct', async () => {
  const { encodeExecEvent, decodeExecEvent, EXEC_EVENT_SIZE } = await import(join(lib, 'exec.types.ts'))
  const event = {
    kind: 1, pid: 10, tid: 11, ppid: 1, uid: 1000, gid: 1000, timestamp_ns: 2 ** 50 + 3, duration_ns: 0, exit_code: -1,
    args_size: 0, args_truncated: 0, pad: 0, comm: 'bash', filename: '/usr/bin/bash', args: ['bash', '-c', 'ünï'],
  }
  const buffer = new DataView(new ArrayBuffer(EXEC_EVENT_SIZE))
  encodeExecEvent(event, buffer, 0)
  // the encoder cannot know args_size; set it as the kernel would
  buffer.setUint32(44, Buffer.byteLength('bash\0-c\0ünï\0'), true)
  const decoded = decodeExecEvent(buffer, 0)
  assert.deepEqual(decoded, { ...event, args_size: Buffer.byteLength('bash\0-c\0ünï\0') })
})

test('an array of arrays is read and written at each element\'s own offset', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-types-'))
  try {
    // a record with a 3×4 array: each level needs its own index in the generated loops
    writeFileSync(join(dir, 'grid.bpf.c'), [
      'typedef unsigned int __u32;',
      'struct grid { __u32 before; __u32 cells[3][4]; __u32 after; };',
      'struct grid *const __periscope_record_events __attribute__((used)) = 0;',
    ].join('\n'))
    execFileSync('clang', ['-g', '-O2', '-target', 'bpf', '-c', join(dir, 'grid.bpf.c'), '-o', join(dir, 'grid.bpf.o')])
    const btf = new BtfTypes(native.btfTypes(join(dir, 'grid.bpf.o')))
    writeFileSync(join(dir, 'grid.types.ts'), generateTypes({ name: 'grid', btf, programs: [], maps: [] }))
    const { encodeGrid, decodeGrid, GRID_SIZE } = await import(join(dir, 'grid.types.ts'))
    const cells = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    const view = new DataView(new ArrayBuffer(GRID_SIZE))
    encodeGrid({ before: 100, cells, after: 200 }, view, 0)
    // the C layout: row-major, 4 bytes per cell after `before`
    assert.deepEqual(Array.from({ length: 12 }, (_, i) => view.getUint32(4 + 4 * i, true)), cells.flat())
    assert.deepEqual(decodeGrid(view, 0), { before: 100, cells, after: 200 })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
