import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { decodeExecEvent, type ExecEvent } from '../../bpf/lib/exec.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { BtfTypes } from '../../runtime/bpf/btf.ts'
import { BpfError } from '../../runtime/bpf/errors.ts'
import { testRun } from '../../runtime/bpf/links.ts'
import { native } from '../../runtime/bpf/native.ts'
import { ObjectSpec, type Setting } from '../../runtime/bpf/object.ts'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import { compileFixture, waitFor } from './kernel.ts'

const fixture = compileFixture('settings')

/** Loads the fixture with `settings`, runs `report` and returns what the program saw. */
async function seenByProgram(settings: Record<string, Setting>): Promise<Record<string, number | bigint>> {
  const object = await ObjectSpec.open(fixture).setSettings(settings).load()
  try {
    assert.equal(testRun(object, 'report'), 0)
    const seen = Buffer.from(object.map('seen').lookup(new Uint8Array(4))!)
    // struct seen in the fixture
    return {
      wide: seen.readBigUInt64LE(0),
      signed_wide: seen.readBigInt64LE(8),
      medium: seen.readUInt32LE(16),
      negative: seen.readInt32LE(20),
      narrow: seen.readUInt16LE(24),
      tiny: seen.readUInt8(26),
    }
  } finally {
    object.close()
  }
}

test('each setting reaches the program at its own .rodata offset, whatever its width; an unset one keeps its default', async () => {
  const seen = await seenByProgram({ tiny: 0xab, wide: 2n ** 63n + 5n, negative: -123_456, medium: 0xdead_beef, signed_wide: -(2n ** 40n) - 7n })
  assert.deepEqual(seen, { wide: 2n ** 63n + 5n, signed_wide: -(2n ** 40n) - 7n, medium: 0xdead_beef, negative: -123_456, narrow: 3, tiny: 0xab })
})

test('a value that does not fit its setting is refused by name, and nothing of that call is written', async () => {
  const spec = ObjectSpec.open(fixture)
  try {
    const refused = (settings: Record<string, Setting>, message: RegExp) => assert.throws(() => spec.setSettings(settings), (error: BpfError) => {
      assert.ok(error instanceof BpfError)
      assert.equal(error.code, 'EINVAL')
      assert.match(error.message, message)
      return true
    })
    refused({ medium: 9, tiny: 256 }, /setting "tiny" is a u8: 256 does not fit/)
    refused({ medium: -1 }, /setting "medium" is a u32: -1 does not fit/)
    refused({ wide: -1n }, /setting "wide" is a u64: -1 does not fit/)
    refused({ negative: 1.5 }, /setting "negative" is a i32: it must be an integer, got 1\.5/)
  } finally {
    spec.close()
  }
  // medium was written to a copy that the refused call dropped
  assert.deepEqual(await seenByProgram({}), { wide: 2n, signed_wide: 6n, medium: 5, negative: 4, narrow: 3, tiny: 1 })
})

test('the ELF\'s own BTF, whose .rodata is not laid out yet, is refused for settings', () => {
  assert.throws(() => new BtfTypes(native.btfTypes(fixture)).sectionVariables('.rodata'), /BTF section \.rodata has no layout yet .*use the BTF of the opened object/)
  const spec = ObjectSpec.open(fixture)
  try {
    const variables = [...spec.btf.sectionVariables('.rodata')].sort(([, a], [, b]) => a.offset - b.offset)
    assert.deepEqual(Object.fromEntries(variables.map(([name, v]) => [name, v.size])), { tiny: 1, wide: 8, narrow: 2, negative: 4, medium: 4, signed_wide: 8 })
    // laid out one after another, as the symbol table places them; every one at offset 0 was the bug
    for (let i = 1; i < variables.length; i++) {
      const [[previous, p], [name, v]] = [variables[i - 1], variables[i]]
      assert.ok(v.offset >= p.offset + p.size, `${name} at ${v.offset} overlaps ${previous} at ${p.offset}`)
    }
  } finally {
    spec.close()
  }
})

test('exec filters by target_tgid and min_duration_ns set together', async () => {
  // the target shell waits for a line, then runs a quick echo and a 300 ms sleep
  const shell = spawn('/bin/sh', ['-c', 'read line; /bin/echo quick-marker; /bin/sleep 0.3; exit 0'], { stdio: ['pipe', 'ignore', 'ignore'] })
  const shellExited = new Promise((resolve) => shell.once('exit', resolve))
  const seen: ExecEvent[] = []
  let exec: LibraryObject | undefined
  try {
    exec = await openLibraryObject('exec', { settings: { target_tgid: shell.pid!, min_duration_ns: 150_000_000 } })
    exec.subscribe('events', (batch) => forEachRecord(batch, (view, offset, size) => seen.push(decodeExecEvent(view, offset, size))))
    spawnSync('/bin/echo', ['not-a-descendant-marker'])
    shell.stdin!.end('go\n')
    await shellExited
    const sleepExec = () => seen.find((e) => e.kind === 1 && e.filename === '/bin/sleep')
    // one ring buffer delivers in order: the echo's exit, had it passed the filter, came before
    await waitFor(() => seen.some((e) => e.kind === 2 && e.pid === sleepExec()?.pid), 'the exit event of the target\'s sleep')
    assert.deepEqual(seen.filter((e) => e.kind === 1).map((e) => e.args[1]), ['quick-marker', '0.3'])
    const exits = seen.filter((e) => e.kind === 2)
    assert.deepEqual(exits.map((e) => e.pid), [sleepExec()!.pid], 'only the exit that lived at least min_duration_ns')
    assert.ok(exits[0].duration_ns >= 300_000_000, `the sleep lived ${exits[0].duration_ns} ns`)
  } finally {
    shell.kill()
    await exec?.close()
  }
})
