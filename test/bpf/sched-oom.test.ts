// An OOM kill seen by the sched object: a child in a memory cgroup of its own, limited to 64 MiB,
// allocates past the limit; the OOM killer must give exactly one OOM kill record for that pid,
// with its name and its anonymous memory near the limit, and its exit record must say SIGKILL.
// The memory controller is cgroup v2's where the v2 hierarchy has it, else cgroup v1's (a hybrid
// host such as this one binds it to v1: test/peers/memory-cgroup.ts); the cgroup is removed in every path.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { decodeSchedEvent, type SchedEvent } from '../../bpf/lib/sched.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { openLibraryObject } from '../../runtime/library/index.ts'
import { SCHED_EVENT_EXIT, SCHED_EVENT_OOM_KILL } from '../../runtime/protocols/sched.ts'
import { root, waitFor } from './kernel.ts'
import { memoryCgroup } from '../peers/memory-cgroup.ts'

const LIMIT = 64 * 1024 * 1024

test('a process past its memory cgroup\'s limit gives exactly one OOM kill record, then its exit by SIGKILL', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-oom-'))
  const workload = join(dir, 'sched-workload')
  execFileSync('cc', ['-O2', '-Wall', '-pthread', '-o', workload, join(root, 'test/bpf/fixtures/sched-workload.c')])
  const sched = await openLibraryObject('sched')
  const events: SchedEvent[] = []
  sched.subscribe('events', (batch) => forEachRecord(batch, (view, offset, size) => events.push(decodeSchedEvent(view, offset, size))))
  const cgroup = memoryCgroup(LIMIT)
  try {
    const child = cgroup.spawnInside(workload, ['hog'])
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)))
    assert.equal(await exited, 'SIGKILL')
    const pid = child.pid!
    await waitFor(() => events.some((e) => e.kind === SCHED_EVENT_EXIT && e.pid === pid), 'the exit record', 10_000)
    const kills = events.filter((e) => e.kind === SCHED_EVENT_OOM_KILL && e.pid === pid)
    assert.equal(kills.length, 1, `OOM kill records for pid ${pid}: ${JSON.stringify(kills)}`)
    const [kill] = kills
    assert.equal(kill!.comm, 'sched-workload')
    assert.equal(kill!.uid, 0)
    // the anonymous memory is what the cgroup was charged for (the binary's pages came in cached, charged elsewhere)
    assert.ok(kill!.anon_rss_kb >= LIMIT / 1024 / 2 && kill!.anon_rss_kb <= LIMIT / 1024, `anonymous ${kill!.anon_rss_kb} kB at the kill, the limit is ${LIMIT / 1024} kB`)
    assert.ok(kill!.total_vm_kb >= kill!.anon_rss_kb)
    // the allocation that ran out was the victim's own
    assert.equal(kill!.ppid, pid)
    const [exit] = events.filter((e) => e.kind === SCHED_EVENT_EXIT && e.pid === pid)
    assert.equal(exit!.exit_signal, 9)
    assert.ok(exit!.timestamp_ns > kill!.timestamp_ns)
  } finally {
    await cgroup.remove()
    await sched.close()
    rmSync(dir, { recursive: true, force: true })
  }
})
