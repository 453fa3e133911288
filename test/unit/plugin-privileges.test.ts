/** Capability dropping reports honestly what it could and could not do. */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { dropCapabilities, needsNetAdmin } from '../../runtime/privileges.ts'

const root = mkdtempSync(path.join(tmpdir(), 'periscope-caps-'))
after(() => rmSync(root, { recursive: true, force: true }))

/** A thread's status file with these effective and bounding sets. */
const status = (effective: bigint, bounding = effective) =>
  `Name:\tnode\nCapEff:\t${effective.toString(16).padStart(16, '0')}\nCapBnd:\t${bounding.toString(16).padStart(16, '0')}\n`

/** A fake /proc/self with the given CapEff and CapBnd per thread (the first is the main thread). */
function proc(name: string, ...threads: bigint[]): string {
  const dir = path.join(root, name)
  mkdirSync(path.join(dir, 'task'), { recursive: true })
  writeFileSync(path.join(dir, 'status'), status(threads[0]!))
  threads.forEach((caps, i) => {
    mkdirSync(path.join(dir, 'task', String(100 + i)))
    writeFileSync(path.join(dir, 'task', String(100 + i), 'status'), status(caps))
  })
  return dir
}

const full = (1n << 41n) - 1n
const bpfPerfmon = (1n << 39n) | (1n << 38n)

describe('dropping capabilities', () => {
  it('says it cannot drop without the native helper, and how to start with less', () => {
    const report = dropCapabilities({ needNetAdmin: false, procSelf: proc('nohelper', full) })
    assert.equal(report.dropped, false)
    assert.match(report.message, /^cannot drop capabilities: still holding .*CAP_SYS_ADMIN/)
    assert.match(report.message, /setpriv/)
  })

  it('reports a drop that missed threads', () => {
    const dir = proc('partial', full, full)
    const report = dropCapabilities({
      needNetAdmin: false,
      procSelf: dir,
      // Only the calling thread changes: what a plain capset(2) would do.
      setter: () => {
        writeFileSync(path.join(dir, 'task', '100', 'status'), status(bpfPerfmon))
        return [{ tid: 100, result: 'changed' }]
      },
    })
    assert.equal(report.dropped, false)
    assert.match(report.message, /incomplete: thread 101 still holds .*CAP_SYS_ADMIN.* \(the helper never reached it\)/)
  })

  it('names the reason a thread kept its capabilities', () => {
    const dir = proc('failed', full, full)
    const report = dropCapabilities({
      needNetAdmin: false,
      procSelf: dir,
      setter: () => {
        writeFileSync(path.join(dir, 'task', '100', 'status'), status(bpfPerfmon))
        return [{ tid: 100, result: 'changed' }, { tid: 101, result: 'failed', error: new Error('capset on thread 101: Operation not permitted') }]
      },
    })
    assert.equal(report.dropped, false)
    assert.match(report.message, /thread 101 still holds .* \(capset on thread 101: Operation not permitted\)/)
  })

  it('counts a bounding set wider than what is kept as not dropped', () => {
    const dir = proc('bounding', full, full)
    const report = dropCapabilities({
      needNetAdmin: false,
      procSelf: dir,
      // effective lowered everywhere, bounding left alone: an exec would regain everything
      setter: () => {
        for (const file of ['status', 'task/100/status', 'task/101/status']) writeFileSync(path.join(dir, file), status(bpfPerfmon, full))
        return [{ tid: 100, result: 'changed' }, { tid: 101, result: 'changed' }]
      },
    })
    assert.equal(report.dropped, false)
    assert.match(report.message, /thread 100 still holds CAP_CHOWN/)
  })

  it('confirms a complete drop and keeps CAP_NET_ADMIN only when needed', () => {
    const dir = proc('complete', full, full)
    let kept = 0n
    const report = dropCapabilities({
      needNetAdmin: true,
      procSelf: dir,
      setter: (keep) => {
        kept = keep
        for (const file of ['status', 'task/100/status', 'task/101/status']) writeFileSync(path.join(dir, file), status(keep))
        return [{ tid: 100, result: 'changed' }, { tid: 101, result: 'changed' }]
      },
    })
    assert.equal(kept, bpfPerfmon | (1n << 12n))
    assert.equal(report.dropped, true)
    assert.deepEqual(report.after, ['CAP_NET_ADMIN', 'CAP_PERFMON', 'CAP_BPF'])
  })

  it('has nothing to do when already minimal', () => {
    const report = dropCapabilities({ needNetAdmin: false, procSelf: proc('minimal', bpfPerfmon) })
    assert.equal(report.dropped, false)
    assert.match(report.message, /already minimal: CAP_PERFMON, CAP_BPF/)
  })

  it('needs CAP_NET_ADMIN only for tc, XDP, cgroup and other networking program types', () => {
    assert.equal(needsNetAdmin(['tracepoint', 'syscall', 'raw_tracepoint', 'perf_event', 'kprobe']), false)
    for (const type of ['sched_cls', 'xdp', 'cgroup_skb', 'cgroup_sock_addr', 'sock_ops']) assert.equal(needsNetAdmin(['tracepoint', type]), true, type)
  })
})
