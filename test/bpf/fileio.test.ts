// The fileio object on the real kernel: dd runs of known sizes give exactly their calls and bytes
// on regular files, and nothing for /dev/zero, a pipe or a socket. Each dd is told apart by its
// pid, so other tests' file I/O does not disturb the counts. The counts dd's loader and libc make
// before dd runs (ld.so reading libc, locale files) are measured by a dd that copies nothing.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, realpathSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { decodeFileioCounts, encodeFileioPath, mapCodecs, FILEIO_PATH_SIZE, type FileioCounts, type FileioProcess as KernelProcess } from '../../bpf/lib/fileio.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import { root, waitFor } from './kernel.ts'
import { runThreads } from './sched-workload.ts'

const READ = 0
const WRITE = 1
/** a process's counts at its exit, and how many bytes it wrote into our pipe */
type FileioProcess = KernelProcess & { piped: number }
const BLOCK = 4096
/** latency buckets per op (FILEIO_LATENCY_BUCKETS) */
const BUCKETS = 24
/** "C": no locale files read, so every dd's start-up reads are the same */
const env = { ...process.env, LC_ALL: 'C', LANG: 'C' }

describe('fileio object', { timeout: 120_000 }, () => {
  let fileio: LibraryObject
  /** every record, by pid, in order: a process that execs leaves one per image */
  const exits = new Map<number, KernelProcess[]>()
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'periscope-fileio-')))
  /** the counts of a dd that copies nothing: its loader's and libc's own reads */
  let startup: FileioCounts
  let startupRecord: FileioProcess

  before(async () => {
    fileio = await openLibraryObject('fileio')
    fileio.subscribe('exits', (batch) => forEachRecord(batch, (view, offset, size) => {
      const record = mapCodecs.processes.value.decode(view, offset, size)
      exits.set(record.pid, [...(exits.get(record.pid) ?? []), record])
    }))
    startupRecord = await run('dd', ['if=/dev/zero', 'of=/dev/null', 'count=0', 'status=none'])
    startup = startupRecord.counts
  })
  after(async () => {
    await fileio?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** Runs a command to its end and returns the counts its process left at exit. */
  async function run(command: string, args: string[], stdout: 'ignore' | 'pipe' = 'ignore'): Promise<FileioProcess> {
    const child = spawn(command, args, { env, stdio: ['ignore', stdout, 'inherit'] })
    let piped = 0
    child.stdout?.on('data', (chunk: Buffer) => (piped += chunk.length))
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    assert.equal(code, 0, `${command} ${args.join(' ')} exited with ${code}`)
    await waitFor(() => exits.get(child.pid!)?.at(-1)?.comm === 'dd', `the exit record of dd (pid ${child.pid})`, 60_000)
    return { ...exits.get(child.pid!)!.at(-1)!, piped }
  }

  /** The counts beyond the start-up reads every dd makes. */
  function beyondStartup(counts: FileioCounts): { ops: number[]; bytes: number[]; errors: number[] } {
    return {
      ops: counts.ops.map((n, op) => n - startup.ops[op]!),
      bytes: counts.bytes.map((n, op) => n - startup.bytes[op]!),
      errors: counts.errors.map((n, op) => n - startup.errors[op]!),
    }
  }

  function assertHistogramsMatch(counts: FileioCounts): void {
    for (let op = 0; op < 4; op++) {
      const inBuckets = counts.latency_buckets.slice(op * BUCKETS, (op + 1) * BUCKETS).reduce((a, b) => a + b, 0)
      assert.equal(inBuckets, counts.ops[op], `op ${op}: every call is in one latency bucket`)
      if (counts.ops[op]! > 0) assert.ok(counts.latency_sum_ns[op]! > 0)
    }
  }

  it('the start-up reads are of regular files (ld.so reading libc), and dd itself names its executable', async () => {
    assert.ok(startup.ops[READ]! >= 1, `start-up reads: ${startup.ops[READ]}`)
    assert.equal(startup.ops[WRITE], 0)
    assert.equal(startupRecord.comm, 'dd')
    assert.equal(startupRecord.executable, realpathSync('/usr/bin/dd'))
  })

  it('dd of=<file> bs=4096 count=257 conv=fsync: 257 writes of 4096 bytes and one fsync; the 257 reads of /dev/zero are not file I/O', async () => {
    const file = join(dir, 'written')
    const dd = await run('dd', ['if=/dev/zero', `of=${file}`, `bs=${BLOCK}`, 'count=257', 'conv=fsync', 'status=none'])
    assert.deepEqual(beyondStartup(dd.counts), { ops: [0, 257, 1, 0], bytes: [0, 257 * BLOCK], errors: [0, 0, 0, 0] })
    assertHistogramsMatch(dd.counts)
    assert.equal(dd.comm, 'dd')
  })

  it('dd if=<file> reads it back: 257 reads of 4096 bytes and one at the end of the file; conv=fdatasync is one fdatasync', async () => {
    const file = join(dir, 'read-back')
    writeFileSync(file, Buffer.alloc(257 * BLOCK, 7))
    const dd = await run('dd', [`if=${file}`, 'of=/dev/null', `bs=${BLOCK}`, 'status=none'])
    assert.deepEqual(beyondStartup(dd.counts), { ops: [258, 0, 0, 0], bytes: [257 * BLOCK, 0], errors: [0, 0, 0, 0] })
    const synced = await run('dd', ['if=/dev/zero', `of=${join(dir, 'synced')}`, 'bs=1000', 'count=3', 'conv=fdatasync', 'status=none'])
    assert.deepEqual(beyondStartup(synced.counts), { ops: [0, 3, 0, 1], bytes: [0, 3000], errors: [0, 0, 0, 0] })
    assertHistogramsMatch(synced.counts)
  })

  it('writes to a socket and to a pipe are not file I/O', async () => {
    let received = 0
    const server = createServer((socket) => socket.on('data', (chunk) => (received += chunk.length)))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    try {
      const toSocket = await run('bash', ['-c', `exec dd if=/dev/zero bs=${BLOCK} count=64 status=none >/dev/tcp/127.0.0.1/${port}`])
      await waitFor(() => received === 64 * BLOCK, 'the socket to receive what dd wrote', 60_000)
      assert.deepEqual(beyondStartup(toSocket.counts), { ops: [0, 0, 0, 0], bytes: [0, 0], errors: [0, 0, 0, 0] })
    } finally {
      server.close()
    }
    const toPipe = await run('dd', ['if=/dev/zero', `bs=${BLOCK}`, 'count=64', 'status=none'], 'pipe')
    assert.equal(toPipe.piped, 64 * BLOCK)
    assert.deepEqual(beyondStartup(toPipe.counts), { ops: [0, 0, 0, 0], bytes: [0, 0], errors: [0, 0, 0, 0] })
  })

  it('an exec ends the old image\'s counts: a shell that execs dd leaves its own record first, and dd\'s is dd\'s alone', async () => {
    const dd = await run('sh', ['-c', `exec dd if=/dev/zero of=${join(dir, 'after-exec')} bs=${BLOCK} count=5 status=none`])
    const [shell, ...rest] = exits.get(dd.pid)!
    assert.equal(rest.length, 1)
    assert.equal(shell!.comm, 'sh')
    assert.ok(shell!.counts.ops[READ]! >= 1, 'the shell\'s loader read its libc')
    assert.ok(shell!.created_ns < dd.created_ns)
    assert.deepEqual(beyondStartup(dd.counts), { ops: [0, 5, 0, 0], bytes: [0, 5 * BLOCK], errors: [0, 0, 0, 0] })
  })

  it('a process first seen through a worker thread is named by its own name, not the thread\'s', async () => {
    const binary = join(dir, 'fio-threads')
    execFileSync('cc', ['-O2', '-Wall', '-Werror', '-pthread', '-o', binary, join(root, 'test/bpf/fixtures/fileio-threads.c')])
    // started before a fileio object of its own loads, so its loader's reads are not seen
    const child = spawn(binary, [join(dir, 'from-worker')], { env, stdio: ['pipe', 'pipe', 'inherit'] })
    let said = ''
    child.stdout.on('data', (chunk: Buffer) => (said += chunk.toString()))
    const late = await openLibraryObject('fileio')
    const records: KernelProcess[] = []
    try {
      late.subscribe('exits', (batch) => forEachRecord(batch, (view, offset, size) => records.push(mapCodecs.processes.value.decode(view, offset, size))))
      await waitFor(() => said === 'ready\n', 'the worker to be ready', 60_000)
      child.stdin.end('go\n')
      await waitFor(() => records.some((r) => r.pid === child.pid), 'the exit record of the threaded process', 60_000)
      const record = records.find((r) => r.pid === child.pid)!
      assert.equal(record.comm, 'fio-threads')
      assert.equal(record.executable, binary)
      assert.deepEqual({ ops: record.counts.ops, bytes: record.counts.bytes }, { ops: [0, 1, 0, 0], bytes: [0, BLOCK] })
    } finally {
      child.kill()
      await late.close()
    }
  })

  it('a process whose threads end it together leaves one record', async () => {
    // its loader's reads of libc made its entry; both threads may find the group dead at their exit
    const rounds = 50
    const wrong: string[] = []
    for (let round = 0; round < rounds; round++) {
      const { pid } = await runThreads(2, 0)
      fileio.drainStreams()
      const records = exits.get(pid) ?? []
      if (records.length !== 1 || records[0]!.comm !== 'sched-workload') wrong.push(`round ${round}: ${JSON.stringify(records.map((r) => [r.comm, r.counts.ops]))}`)
    }
    assert.deepEqual(wrong, [], `${wrong.length} of ${rounds} processes not recorded exactly once`)
  })

  it('a process\'s entry goes at its exit, and no map overflowed', async () => {
    const dd = await run('dd', ['if=/dev/zero', `of=${join(dir, 'gone')}`, 'count=1', 'status=none'])
    const key = new Uint8Array(4)
    new DataView(key.buffer).setUint32(0, dd.pid, true)
    assert.equal(fileio.map('processes').lookup(key), undefined)
    const overflows = fileio.object.map('overflows').lookup(new Uint8Array(4))!
    assert.equal(new BigUint64Array(overflows.buffer.slice(overflows.byteOffset, overflows.byteOffset + overflows.byteLength)).reduce((a, b) => a + b, 0n), 0n)
    assert.equal(fileio.stats().dropped, 0)
  })

  describe('target files', () => {
    const targetKey = (path: string): Uint8Array => {
      const key = new Uint8Array(FILEIO_PATH_SIZE)
      encodeFileioPath({ path }, new DataView(key.buffer), 0)
      return key
    }
    const index = (i: number): Uint8Array => new Uint8Array(new Uint32Array([i]).buffer)
    const fileStats = (i: number): FileioCounts => {
      const value = fileio.map('file_stats').lookup(index(i))!
      return decodeFileioCounts(new DataView(value.buffer, value.byteOffset, value.byteLength), 0)
    }
    const target = join(dir, 'target')
    const other = join(dir, 'other')
    const early = join(dir, 'opened-early')

    before(() => {
      writeFileSync(target, Buffer.alloc(10 * BLOCK))
      writeFileSync(other, Buffer.alloc(10 * BLOCK))
      writeFileSync(early, '')
      fileio.map('target_paths').update(targetKey(target), index(1))
      fileio.map('target_paths').update(targetKey(early), index(2))
      fileio.map('target_count').update(index(0), index(2))
    })
    after(() => {
      fileio.map('target_paths').delete(targetKey(target))
      fileio.map('target_paths').delete(targetKey(early))
      fileio.map('target_count').update(index(0), index(0))
    })

    it('reads of a named file count per file, from every process, and other files do not', async () => {
      const before1 = fileStats(1)
      await run('dd', [`if=${target}`, 'of=/dev/null', `bs=${BLOCK}`, 'status=none'])
      // a relative path from the process's working directory is the same file
      await run('bash', ['-c', `cd ${dir} && exec dd if=./target of=/dev/null bs=${2 * BLOCK} status=none`])
      await run('dd', [`if=${other}`, 'of=/dev/null', `bs=${BLOCK}`, 'status=none'])
      const stats = fileStats(1)
      assert.equal(stats.ops[READ]! - before1.ops[READ]!, 11 + 6)
      assert.equal(stats.bytes[READ]! - before1.bytes[READ]!, 2 * 10 * BLOCK)
      assert.equal(stats.ops[WRITE], 0)
    })

    it('a target file the inode map has no room for is counted as an overflow', async () => {
      const small = await openLibraryObject('fileio', { maxEntries: { target_inodes: 1 } })
      try {
        small.map('target_paths').update(targetKey(target), index(1))
        small.map('target_paths').update(targetKey(other), index(2))
        small.map('target_count').update(index(0), index(2))
        const overflowsOf = (reason: number): bigint => {
          const perCpu = small.object.map('overflows').lookup(index(reason))!
          return new BigUint64Array(perCpu.buffer.slice(perCpu.byteOffset, perCpu.byteOffset + perCpu.byteLength)).reduce((a, b) => a + b, 0n)
        }
        await run('dd', [`if=${target}`, 'of=/dev/null', 'count=1', 'status=none'])
        await run('dd', [`if=${other}`, 'of=/dev/null', 'count=1', 'status=none'])
        assert.equal(overflowsOf(2), 1n, 'FILEIO_OVERFLOW_TARGET_INODES')
        assert.equal([...small.map('target_inodes').entries()].length, 1)
      } finally {
        await small.close()
      }
    })

    it('a file opened before it was named is found by the open_targets iterator', async () => {
      // a process that keeps the file open and appends to it when told, on stdin
      const holder = spawn('bash', ['-c', `exec 3>>${early}; read line; printf abc >&3; read line`], { env, stdio: ['pipe', 'ignore', 'inherit'] })
      try {
        let found = ''
        const deadline = Date.now() + 60_000
        while (!(found = await fileio.runIterator('open_targets')).includes(`${holder.pid} ${early}`)) {
          assert.ok(Date.now() < deadline, `the iterator did not find ${early} held by ${holder.pid}: ${found}`)
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
        holder.stdin!.write('go\n')
        await waitFor(() => fileStats(2).bytes[WRITE] === 3, 'the holder\'s 3 bytes to count for the early file', 60_000)
        assert.equal(fileStats(2).ops[WRITE], 1)
      } finally {
        holder.stdin!.end('\n')
        await new Promise((resolve) => holder.once('exit', resolve))
      }
    })
  })
})
