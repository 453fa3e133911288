import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import { test } from 'node:test'
import { attachTracepoint } from '../../runtime/bpf/links.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import { objectPath } from './kernel.ts'

const openFds = (): number => readdirSync('/proc/self/fd').length

test('1000 open/load/attach/close cycles leak no file descriptor', async () => {
  const path = objectPath('probes')
  const cycle = async (withReader: boolean) => {
    const spec = ObjectSpec.open(path)
    for (const p of spec.programs()) spec.setAutoload(p.name, p.name === 'probe_tracepoint')
    const object = await spec.load()
    attachTracepoint(object, 'probe_tracepoint', 'sched', 'sched_process_fork')
    object.close()
    if (withReader) {
      const gen = await ObjectSpec.open(objectPath('loopgen')).load()
      new RingBufferReader(gen, 'events', { onBatch: () => {} }).close()
      gen.close()
    }
  }
  await cycle(true) // warm up lazily opened fds (libuv, epoll)
  const before = openFds()
  for (let i = 0; i < 1000; i++) await cycle(i % 10 === 0)
  assert.equal(openFds(), before)
})
