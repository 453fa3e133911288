/**
 * Unwinding a Debian binary built without frame pointers: CPU samples of a busy redis-server
 * (bpf/lib/stacks.bpf.o, runtime/profiling/unwind.ts) reach the outermost frame, `_start` for the
 * main thread (through main) or the thread's start in libc, in at least 90% of samples.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { realpathSync } from 'node:fs'
import { it } from 'node:test'
import { probeAttach } from '../../runtime/bpf/features.ts'
import { SAMPLE_TID, StackUnwinder, UNWIND_COMPLETE, UNWIND_END_NAMES } from '../../runtime/profiling/unwind.ts'
import { ElfFile } from '../../runtime/symbols/elf.ts'
import { ProcessMappings } from '../../runtime/symbols/mappings.ts'
import { REDIS_BENCHMARK, REDIS_SERVER, startRedis } from '../peers/redis.ts'
import { requireFeature } from './kernel.ts'
import { sampleProcess } from './unwind-fixture.ts'

it('stacks of a busy redis-server reach _start or the thread start in 90% of samples', async (t) => {
  if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
  const binary = realpathSync(REDIS_SERVER)
  const elf = ElfFile.open(binary)
  // _start: where the kernel enters the program; main's caller's caller returns into it
  const entry = elf.fileOffset(BigInt(/Entry point address:\s+(0x[0-9a-f]+)/.exec(execFileSync('readelf', ['-h', binary], { encoding: 'utf8' }))![1]!))
  elf.close()

  const redis = await startRedis()
  t.after(() => redis.stop())
  let benchmark: ChildProcess | undefined
  t.after(() => benchmark?.kill('SIGKILL'))
  const { records, dropped } = await sampleProcess(redis.pid, {
    stackBytes: 8192,
    count: 300,
    // a mix of commands, pipelined, on a key space: redis busy in its command paths
    whileSampling: () => {
      benchmark = spawn(REDIS_BENCHMARK, ['-h', '127.0.0.1', '-p', String(redis.port), '-q', '-l', '-n', '1000000', '-P', '4', '-r', '100000', '-t', 'set,get,incr,lpush,lpop,hset,zadd'], { stdio: 'ignore' })
    },
  })
  benchmark!.kill('SIGKILL')
  assert.equal(dropped, 0)

  const mappings = ProcessMappings.read(redis.pid)
  const unwinder = new StackUnwinder()
  const frames = new Float64Array(128)
  const ends = new Map<string, number>()
  let reached = 0
  for (const record of records) {
    const count = unwinder.unwindSample(record, 0, frames)
    const end = UNWIND_END_NAMES[unwinder.end]
    ends.set(end, (ends.get(end) ?? 0) + 1)
    if (unwinder.end !== UNWIND_COMPLETE) continue
    const last = mappings.find(frames[count - 1]!)!
    const offset = frames[count - 1]! - Number(last.start) + Number(last.offset)
    const mainThread = record.getUint32(SAMPLE_TID, true) === redis.pid
    if (mainThread ? last.path === binary && offset > entry && offset < entry + 0x30 : last.path.endsWith('/libc.so.6')) reached++
  }
  t.diagnostic(`${reached} of ${records.length} samples reach _start or a thread start; ends ${JSON.stringify([...ends])}`)
  assert.ok(reached >= 0.9 * records.length, `${reached} of ${records.length} samples reach _start or the thread start; ends ${JSON.stringify([...ends])}`)
})
