/**
 * Kernel symbols (runtime/symbols/kallsyms.ts) against /proc/kallsyms read independently: every
 * text symbol's address resolves to a name at that address with offset 0, and one byte in to the
 * same function with offset 1, with its module ([bpf] for the BPF programs loaded); the kernel's
 * build id equals `perf buildid-list -k`'s.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { KernelSymbols } from '../../runtime/symbols/kallsyms.ts'

interface KallsymsLine { address: bigint; type: string; name: string; module: string | undefined }

function readKallsyms(): KallsymsLine[] {
  return readFileSync('/proc/kallsyms', 'utf8').split('\n').flatMap((line) => {
    const match = /^([0-9a-f]{16}) ([tTwW]) (\S+)(?:\t\[(\S+)\])?$/.exec(line)
    return match === null ? [] : [{ address: BigInt(`0x${match[1]}`), type: match[2]!, name: match[3]!, module: match[4] }]
  })
}

describe('kernel symbols', () => {
  it('every text symbol of /proc/kallsyms resolves to a name at its address, offset 0; one byte in, offset 1', () => {
    const kernel = KernelSymbols.load()
    const lines = readKallsyms()
    assert.ok(lines.length > 10_000, `${lines.length} text symbols`)
    const namesAt = new Map<bigint, Set<string>>()
    for (const line of lines) namesAt.set(line.address, (namesAt.get(line.address) ?? new Set()).add(line.name))
    let checked = 0
    for (const line of lines) {
      const found = kernel.lookup(line.address)
      // a BPF program unloaded between the two reads is gone from one of them
      if (line.module === 'bpf' && (found === undefined || !namesAt.get(line.address)!.has(found.name))) continue
      assert.ok(found !== undefined, `${line.name} at ${line.address.toString(16)}`)
      assert.ok(namesAt.get(line.address)!.has(found.name), `${found.name} is one of ${[...namesAt.get(line.address)!].join(', ')}`)
      assert.equal(found.offset, 0)
      assert.equal(found.module, line.module)
      if (!namesAt.has(line.address + 1n)) {
        const inside = kernel.lookup(line.address + 1n)!
        assert.deepEqual([inside.name, inside.offset], [found.name, 1])
      }
      checked++
    }
    assert.ok(checked > lines.length * 0.99, `${checked} of ${lines.length} checked`)
    // known kernel functions by name
    for (const name of ['schedule', 'do_nanosleep', 'tcp_sendmsg']) {
      const line = lines.find((l) => l.name === name && l.module === undefined)!
      assert.deepEqual(kernel.lookup(line.address + 4n), { name, offset: 4, module: undefined })
    }
  })

  it('user-space addresses and addresses below the kernel text resolve to nothing', () => {
    const kernel = KernelSymbols.load()
    assert.equal(kernel.lookup(0x7fff_0000_1000n), undefined)
    assert.equal(kernel.lookup(0x0000_5555_5555_5000n), undefined)
    assert.equal(kernel.lookup(0xffff_8000_0000_0000n), undefined)
  })

  it('the running kernel\'s build id equals perf buildid-list -k\'s', () => {
    const expected = execFileSync('perf', ['buildid-list', '-k'], { encoding: 'utf8' }).trim()
    assert.match(expected, /^[0-9a-f]{40}$/)
    assert.equal(KernelSymbols.load().buildId, expected)
  })
})
