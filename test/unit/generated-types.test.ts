import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { BtfTypes } from '../../runtime/bpf/btf.ts'
import { native } from '../../runtime/bpf/native.ts'

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
