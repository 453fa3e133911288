/** Dropping privileges reports honestly what it could and could not do, judged by /proc. */
import assert from 'node:assert/strict'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { capabilitiesForProgramType, capabilityNames, claimDirectory, dropPrivileges, runtimeIdentity, type ThreadResult } from '../../runtime/privileges.ts'

const root = mkdtempSync(path.join(tmpdir(), 'periscope-caps-'))
after(() => rmSync(root, { recursive: true, force: true }))

interface Thread {
  caps: bigint
  bounding?: bigint
  uid?: number
  noNewPrivs?: boolean
}

/** A thread's status file as the kernel writes it. */
const status = ({ caps, bounding = caps, uid = 0, noNewPrivs = false }: Thread) => {
  const hex = (mask: bigint) => mask.toString(16).padStart(16, '0')
  const gid = uid
  return `Name:\tnode\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\nGid:\t${gid}\t${gid}\t${gid}\t${gid}\nGroups:\t${uid === 0 ? '0 ' : ''}\n` +
    `NoNewPrivs:\t${noNewPrivs ? 1 : 0}\nCapInh:\t${hex(0n)}\nCapPrm:\t${hex(caps)}\nCapEff:\t${hex(caps)}\nCapBnd:\t${hex(bounding)}\nCapAmb:\t${hex(0n)}\n`
}

/** A fake /proc/self with these threads (the first is the main thread, tid 100). */
function proc(name: string, ...threads: Thread[]): { dir: string; set: (tid: number, thread: Thread) => void } {
  const dir = path.join(root, name)
  const set = (tid: number, thread: Thread) => {
    mkdirSync(path.join(dir, 'task', String(tid)), { recursive: true })
    writeFileSync(path.join(dir, 'task', String(tid), 'status'), status(thread))
    if (tid === 100) writeFileSync(path.join(dir, 'status'), status(thread))
  }
  threads.forEach((thread, i) => set(100 + i, thread))
  return { dir, set }
}

const full = (1n << 41n) - 1n
const kept = (1n << 39n) | (1n << 38n) | (1n << 12n) | (1n << 2n)
const dropped: Thread = { caps: kept, uid: runtimeIdentity.uid, noNewPrivs: true }
const changed = (...tids: number[]): ThreadResult[] => tids.map((tid) => ({ tid, result: 'changed' }))

describe('dropping privileges', () => {
  it('keeps CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_DAC_READ_SEARCH, and becomes nobody with no_new_privs', () => {
    const fake = proc('complete', { caps: full }, { caps: full })
    let asked: unknown[] = []
    const report = dropPrivileges({
      procSelf: fake.dir,
      setter: (...args) => {
        asked = args
        fake.set(100, dropped)
        fake.set(101, dropped)
        return changed(100, 101)
      },
    })
    assert.deepEqual(asked, [kept, 65534, 65534])
    assert.equal(report.dropped, true)
    assert.deepEqual(report.after, ['CAP_DAC_READ_SEARCH', 'CAP_NET_ADMIN', 'CAP_PERFMON', 'CAP_BPF'])
    assert.match(report.message, /^dropped CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, .*CAP_SYS_ADMIN.*; continuing as nobody \(uid 65534\) with no_new_privs, keeping CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF$/)
  })

  it('says it cannot drop without the native helper, and how to start with less', () => {
    const report = dropPrivileges({ procSelf: proc('nohelper', { caps: full }).dir })
    assert.equal(report.dropped, false)
    assert.match(report.message, /^cannot drop privileges: still uid 0 holding .*CAP_SYS_ADMIN/)
    assert.match(report.message, /start periscope as nobody .*`setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all,\+bpf,\+perfmon,\+net_admin,\+dac_read_search .*--bounding-set=-all,\+bpf,\+perfmon,\+net_admin,\+dac_read_search --no-new-privs -- periscope run`$/)
  })

  it('reports a drop that missed threads', () => {
    const fake = proc('partial', { caps: full }, { caps: full })
    // only the calling thread changes: what plain setresuid(2) and capset(2) would do
    const report = dropPrivileges({ procSelf: fake.dir, setter: () => (fake.set(100, dropped), changed(100)) })
    assert.equal(report.dropped, false)
    assert.match(report.message, /incomplete: thread 101 still holds .*CAP_SYS_ADMIN.*, has uids 0 0 0 0, has gids 0 0 0 0 and groups \[0\], lacks no_new_privs \(the helper never reached it\)/)
  })

  it('names the reason a thread kept its privileges', () => {
    const fake = proc('failed', { caps: full }, { caps: full })
    const report = dropPrivileges({
      procSelf: fake.dir,
      setter: () => {
        fake.set(100, dropped)
        return [{ tid: 100, result: 'changed' }, { tid: 101, result: 'failed', error: new Error('setresuid on thread 101: Operation not permitted') }]
      },
    })
    assert.equal(report.dropped, false)
    assert.match(report.message, /thread 101 still .* \(setresuid on thread 101: Operation not permitted\)/)
  })

  it('counts a thread that lowered its capabilities but is still uid 0, or lacks no_new_privs, as not dropped', () => {
    const fake = proc('uid0', { caps: full }, { caps: full })
    const report = dropPrivileges({
      procSelf: fake.dir,
      setter: () => {
        fake.set(100, { caps: kept, noNewPrivs: true })
        fake.set(101, { caps: kept, uid: 65534 })
        return changed(100, 101)
      },
    })
    assert.equal(report.dropped, false)
    assert.match(report.message, /thread 100 still has uids 0 0 0 0, has gids 0 0 0 0 and groups \[0\] \(the helper reported it changed\); thread 101 still lacks no_new_privs/)
  })

  it('counts a bounding set wider than what is kept as not dropped', () => {
    const fake = proc('bounding', { caps: full }, { caps: full })
    const report = dropPrivileges({
      procSelf: fake.dir,
      // an exec could regain everything through the bounding set
      setter: () => (fake.set(100, { ...dropped, bounding: full }), fake.set(101, dropped), changed(100, 101)),
    })
    assert.equal(report.dropped, false)
    assert.match(report.message, /thread 100 still holds CAP_CHOWN/)
  })

  it('has nothing to do when already unprivileged; uid 0 with only the kept capabilities is not that', () => {
    assert.match(dropPrivileges({ procSelf: proc('minimal', dropped).dir }).message, /already minimal: CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF, uid 65534/)
    const root = dropPrivileges({ procSelf: proc('root-kept', { caps: kept }).dir })
    assert.match(root.message, /^cannot drop privileges: still uid 0,/)
  })
})

describe('capabilities', () => {
  it('are named from one table', () => {
    assert.deepEqual(capabilityNames((1n << 21n) | (1n << 39n) | (1n << 0n)), ['CAP_CHOWN', 'CAP_SYS_ADMIN', 'CAP_BPF'])
  })

  it('that a program type needs follow the kernel: CAP_PERFMON for tracing, CAP_NET_ADMIN for tc, XDP and cgroup', () => {
    for (const type of ['tracepoint', 'kprobe', 'raw_tracepoint', 'tracing', 'perf_event', 'lsm']) assert.deepEqual(capabilitiesForProgramType(type), ['CAP_BPF', 'CAP_PERFMON'], type)
    for (const type of ['sched_cls', 'xdp', 'cgroup_skb', 'cgroup_sock_addr', 'sock_ops']) assert.deepEqual(capabilitiesForProgramType(type), ['CAP_BPF', 'CAP_NET_ADMIN'], type)
    assert.deepEqual(capabilitiesForProgramType('syscall'), ['CAP_BPF'])
  })
})

describe('claiming a directory for after the drop', () => {
  const isOurs = (entry: string) => entry.endsWith('.jsonl')

  it('refuses a directory that holds anything else, naming it and the fix', () => {
    const dir = mkdtempSync(path.join(root, 'shared-'))
    writeFileSync(path.join(dir, 'traces.jsonl'), '')
    writeFileSync(path.join(dir, 'periscope.yaml'), '')
    assert.throws(() => claimDirectory({ path: dir, what: 'exporter.dataDir', isOurs, mode: 0o755 }),
      new RegExp(`exporter.dataDir ${dir} is not a directory of its own \\(it also holds periscope.yaml\\); .* continues as nobody \\(uid 65534\\) .* \`chown -R 65534:65534 ${dir}\`$`))
  })

  it('refuses a directory others may write to', () => {
    const dir = mkdtempSync(path.join(root, 'open-'))
    chmodSync(dir, 0o1777)
    assert.throws(() => claimDirectory({ path: dir, what: 'exporter.dataDir', isOurs, mode: 0o755 }), /is not a directory of its own \(others may write to it\)/)
  })
})
