// An OOM kill seen by the sched object: a child in a memory cgroup of its own, limited to 64 MiB,
// allocates past the limit; the OOM killer must give exactly one OOM kill record for that pid,
// with its name and its resident memory near the limit, and its exit record must say SIGKILL.
// The memory controller is cgroup v2's where the v2 hierarchy has it, else cgroup v1's (a hybrid
// host such as this one binds it to v1); the cgroup is removed in every path.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { decodeSchedEvent, type SchedEvent } from '../../bpf/lib/sched.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { cgroup2MountPoints } from '../../runtime/config/cgroups.ts'
import { openLibraryObject } from '../../runtime/library/index.ts'
import { SCHED_EVENT_EXIT, SCHED_EVENT_OOM_KILL } from '../../runtime/protocols/sched.ts'
import { root, sleep, waitFor } from './kernel.ts'

const LIMIT = 64 * 1024 * 1024

/** A memory cgroup limited to `limit` bytes: its cgroup.procs file, and how to remove it. */
function memoryCgroup(limit: number): { procs: string; remove(): Promise<void> } {
  const name = `periscope-test-oom-${process.pid}`
  const v2 = cgroup2MountPoints().find((mount) => readFileSync(join(mount, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('memory'))
  let path: string
  if (v2 !== undefined) {
    // the controller must be on in the parent's subtree for a child to have memory.max
    writeFileSync(join(v2, 'cgroup.subtree_control'), '+memory')
    path = join(v2, name)
    mkdirSync(path)
    writeFileSync(join(path, 'memory.max'), String(limit))
    writeFileSync(join(path, 'memory.swap.max'), '0')
  } else if (existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes')) {
    path = join('/sys/fs/cgroup/memory', name)
    mkdirSync(path)
    writeFileSync(join(path, 'memory.limit_in_bytes'), String(limit))
    if (existsSync(join(path, 'memory.memsw.limit_in_bytes'))) writeFileSync(join(path, 'memory.memsw.limit_in_bytes'), String(limit))
  } else {
    throw new Error('no memory cgroup controller on this host (neither in cgroup v2 nor mounted as cgroup v1 at /sys/fs/cgroup/memory)')
  }
  return {
    procs: join(path, 'cgroup.procs'),
    async remove() {
      const deadline = Date.now() + 10_000
      for (;;) {
        try {
          rmdirSync(path)
          return
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code
          if (code === 'ENOENT') return
          // the killed process is still counted inside until it is reaped
          if (code !== 'EBUSY' || Date.now() > deadline) throw new Error(`remove cgroup ${path}: ${(error as Error).message}`)
          await sleep(20)
        }
      }
    },
  }
}

test('a process past its memory cgroup\'s limit gives exactly one OOM kill record, then its exit by SIGKILL', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-oom-'))
  const workload = join(dir, 'sched-workload')
  execFileSync('cc', ['-O2', '-Wall', '-o', workload, join(root, 'test/bpf/fixtures/sched-workload.c')])
  const sched = await openLibraryObject('sched')
  const events: SchedEvent[] = []
  sched.subscribe('events', (batch) => forEachRecord(batch, (view, offset, size) => events.push(decodeSchedEvent(view, offset, size))))
  const cgroup = memoryCgroup(LIMIT)
  try {
    // the shell moves itself in, then becomes the allocator: every byte it allocates is charged there
    const child = spawn('/bin/sh', ['-c', 'echo $$ > "$PROCS" && exec "$WORKLOAD" hog'], { env: { PROCS: cgroup.procs, WORKLOAD: workload }, stdio: 'ignore' })
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
