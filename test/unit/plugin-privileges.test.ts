/** Capability dropping reports honestly what it could and could not do. */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { dropCapabilities } from '../../runtime/privileges.ts'

const root = mkdtempSync(path.join(tmpdir(), 'periscope-caps-'))
after(() => rmSync(root, { recursive: true, force: true }))

/** A fake /proc/self with the given CapEff per thread (the first is the main thread). */
function proc(name: string, ...threads: bigint[]): string {
  const dir = path.join(root, name)
  mkdirSync(path.join(dir, 'task'), { recursive: true })
  const status = (caps: bigint) => `Name:\tnode\nCapEff:\t${caps.toString(16).padStart(16, '0')}\n`
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
      setter: () => writeFileSync(path.join(dir, 'task', '100', 'status'), `CapEff:\t${bpfPerfmon.toString(16)}\n`),
    })
    assert.equal(report.dropped, false)
    assert.match(report.message, /incomplete: threads 101 still hold/)
  })

  it('confirms a complete drop and keeps CAP_NET_ADMIN only when needed', () => {
    const dir = proc('complete', full, full)
    let kept = 0n
    const report = dropCapabilities({
      needNetAdmin: true,
      procSelf: dir,
      setter: (keep) => {
        kept = keep
        for (const file of ['status', 'task/100/status', 'task/101/status']) writeFileSync(path.join(dir, file), `CapEff:\t${keep.toString(16)}\n`)
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
})
