// The alloc object on the real kernel: uprobes on the libc of one process (found by the
// object's task_vma iterator, attached for that pid) give exactly the calls, bytes allocated and
// bytes in use of a C program whose allocations are known (test/e2e/fixtures/alloc-workload.c),
// realloc(NULL, n) and realloc(p, 0) counted as realloc calls; no other process is counted;
// the process's entries go at its exit, its last counts on the exits ring; a full blocks map
// counts what it could not store.
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { decodeAllocStats, type AllocStats } from '../../bpf/lib/alloc.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import { waitFor } from './kernel.ts'
import { afterStep1, afterStep2, buildAllocWorkload, inUseAfterStep1 } from '../e2e/alloc-workload.ts'

describe('alloc object', { timeout: 120_000 }, () => {
  let alloc: LibraryObject
  let dir: string
  let binary: string
  const exits: AllocStats[] = []

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'periscope-alloc-'))
    binary = buildAllocWorkload(dir)
    alloc = await openLibraryObject('alloc')
    alloc.subscribe('exits', (batch) => forEachRecord(batch, (view, offset, size) => exits.push(decodeAllocStats(view, offset, size))))
  })
  after(async () => {
    await alloc?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** Waits until the workload has written `line`. */
  async function untilSaid(child: ChildProcessByStdio<Writable, Readable, null>, output: { text: string }, line: string): Promise<void> {
    await waitFor(() => output.text.includes(`${line}\n`), `the workload (pid ${child.pid}) to say "${line}"`, 60_000)
  }

  /** The object's uprobes on a libc's functions, for one process. */
  function attachAll(libc: string, pid: number, object = alloc): { detach(): void }[] {
    const links: { detach(): void }[] = []
    for (const [func, retprobe] of [['malloc', true], ['calloc', true], ['realloc', true], ['free', false]] as const) {
      links.push(object.attachUprobe(`${func}_enter`, libc, { symbol: func, retprobe: false, pid }))
      if (retprobe) links.push(object.attachUprobe(`${func}_exit`, libc, { symbol: func, retprobe: true, pid }))
    }
    return links
  }

  function statsOf(pid: number): AllocStats | undefined {
    const value = alloc.map('processes').lookup(new Uint8Array(new Uint32Array([pid]).buffer))
    return value === undefined ? undefined : decodeAllocStats(new DataView(value.buffer, value.byteOffset, value.byteLength), 0)
  }

  const summary = (stats: AllocStats) => ({
    calls: stats.calls, failures: stats.failures, allocated: stats.allocated_bytes, freed: stats.freed_bytes, unknownFrees: stats.unknown_frees,
  })

  it('counts exactly the workload\'s calls and bytes, and nothing of other processes', async () => {
    const child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] })
    const output = { text: '' }
    child.stdout.on('data', (chunk: Buffer) => (output.text += chunk.toString()))
    const links: { detach(): void }[] = []
    try {
      await untilSaid(child, output, 'ready')
      const libc = (await alloc.runIterator('libc_mappings', { pid: child.pid })).trim().split('\n')
      assert.equal(new Set(libc).size, 1, `one libc mapped: ${libc.join(', ')}`)
      links.push(...attachAll(libc[0]!, child.pid!))
      // other processes calling the same libc meanwhile
      execFileSync('/bin/sh', ['-c', 'for i in 1 2 3; do ls / >/dev/null; done'])

      child.stdin.write('go\n')
      await untilSaid(child, output, 'step 1')
      const step1 = statsOf(child.pid!)!
      assert.deepEqual(summary(step1), afterStep1)
      assert.equal(step1.tracked_bytes, afterStep1.allocated, 'every block remembered')
      assert.equal(step1.tracked_bytes - step1.freed_bytes, inUseAfterStep1, 'in use: c, d, e and h')
      assert.equal(step1.comm, 'alloc-workload')

      child.stdin.write('go\n')
      await untilSaid(child, output, 'step 2')
      const step2 = statsOf(child.pid!)!
      assert.deepEqual(summary(step2), afterStep2)
      assert.equal(step2.tracked_bytes - step2.freed_bytes, 0)
      assert.deepEqual([...alloc.map('processes').entries()].length, 1, 'only the workload is counted')

      child.stdin.end('go\n')
      await waitFor(() => exits.some((e) => e.pid === child.pid), 'the workload\'s exit record', 60_000)
      assert.deepEqual(summary(exits.find((e) => e.pid === child.pid)!), afterStep2)
      assert.equal(statsOf(child.pid!), undefined, 'its entry went at its exit')
      assert.equal([...alloc.map('blocks').entries()].length, 0, 'no block of it is left')
      const overflows = alloc.object.map('overflows')
      for (let reason = 0; reason < 3; reason++) {
        const perCpu = overflows.lookup(new Uint8Array(new Uint32Array([reason]).buffer))!
        assert.equal(new BigUint64Array(perCpu.buffer.slice(perCpu.byteOffset, perCpu.byteOffset + perCpu.byteLength)).reduce((a, b) => a + b, 0n), 0n)
      }
      assert.equal(alloc.stats().dropped, 0)
    } finally {
      for (const link of links) link.detach()
      child.kill()
    }
  })

  it('leaves the blocks of a process that exits with blocks in use nowhere in the kernel', async () => {
    const child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] })
    const output = { text: '' }
    child.stdout.on('data', (chunk: Buffer) => (output.text += chunk.toString()))
    const links: { detach(): void }[] = []
    try {
      await untilSaid(child, output, 'ready')
      const [libc] = (await alloc.runIterator('libc_mappings', { pid: child.pid })).trim().split('\n')
      links.push(...attachAll(libc!, child.pid!))
      child.stdin.write('go\n')
      await untilSaid(child, output, 'step 1')
      assert.equal([...alloc.map('blocks').entries()].length, 4, 'the blocks in use after step 1: c, d, e and h')
      child.stdin.end()
      await waitFor(() => exits.some((e) => e.pid === child.pid), 'the workload\'s exit record', 60_000)
      assert.equal([...alloc.map('blocks').entries()].length, 0)
    } finally {
      for (const link of links) link.detach()
      child.kill()
    }
  })

  it('a full blocks map counts each block it could not store, and keeps usage to the blocks it has', async () => {
    const small = await openLibraryObject('alloc', { maxEntries: { blocks: 2 } })
    const child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] })
    const output = { text: '' }
    child.stdout.on('data', (chunk: Buffer) => (output.text += chunk.toString()))
    const links: { detach(): void }[] = []
    try {
      await untilSaid(child, output, 'ready')
      const [libc] = (await small.runIterator('libc_mappings', { pid: child.pid })).trim().split('\n')
      links.push(...attachAll(libc!, child.pid!, small))
      child.stdin.write('go\n')
      await untilSaid(child, output, 'step 1')
      const value = small.map('processes').lookup(new Uint8Array(new Uint32Array([child.pid!]).buffer))!
      const stats = decodeAllocStats(new DataView(value.buffer, value.byteOffset, value.byteLength), 0)
      // with room for two: c (calloc) and e (realloc(NULL, 50)) came while a and b, then d and b, were held
      const perCpu = small.object.map('overflows').lookup(new Uint8Array(4))!
      assert.equal(new BigUint64Array(perCpu.buffer.slice(perCpu.byteOffset, perCpu.byteOffset + perCpu.byteLength)).reduce((a, b) => a + b, 0n), 2n)
      assert.equal(stats.allocated_bytes, afterStep1.allocated)
      assert.equal(stats.tracked_bytes, afterStep1.allocated - 300 - 50)
      assert.equal(stats.tracked_bytes - stats.freed_bytes, 1000 + (2 << 20), 'in use: d and h, the blocks it holds')
    } finally {
      for (const link of links) link.detach()
      child.kill()
      await small.close()
    }
  })
})
