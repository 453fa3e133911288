/**
 * Audit's attach plan on kernels older than some of the syscalls it reports: a point marked with
 * the release that added its tracepoint is skipped where the tracepoint is absent, and the run
 * log says so; every other point is planned as before, so a missing tracepoint that should exist
 * still fails the object loudly at attach.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { FeatureResult } from '../../runtime/bpf/features.ts'
import { catalogue, planAttach } from '../../runtime/library/catalogue.ts'

const supported = async (): Promise<FeatureResult> => ({ status: 'supported' })
const programs = catalogue.audit.attach.flatMap((point) => point.alternatives.map((a) => ('program' in a ? a.program : '')))
/** A kernel that has every tracepoint but those named. */
const without = (...absent: string[]) => (name: string) => !absent.includes(name)

describe('audit attach plan', () => {
  it('a kernel with fchmodat2 (Linux 6.6) attaches every audit program, and the run log has nothing to say', async () => {
    const { attach, unused, notes } = await planAttach('audit', catalogue.audit, {}, supported, without())
    assert.deepEqual(attach.map((a) => a.program), programs)
    assert.ok(programs.includes('exit_fchmodat2'))
    assert.deepEqual([unused, notes], [[], []])
  })

  it('a kernel without it (Debian 12\'s 6.1) skips that point alone, loads nothing for it, and says why', async () => {
    const { attach, unused, notes } = await planAttach('audit', catalogue.audit, {}, supported, without('syscalls/sys_exit_fchmodat2'))
    assert.deepEqual(attach.map((a) => a.program), programs.filter((p) => p !== 'exit_fchmodat2'))
    assert.deepEqual(unused, ['exit_fchmodat2'])
    assert.deepEqual(notes, ['audit: mode changes (fchmodat2 exit) not observed: this kernel has no syscalls/sys_exit_fchmodat2 tracepoint (Linux 6.6)'])
  })

  it('a point every kernel should have stays in the plan when its tracepoint is missing, so its attach fails and says so', async () => {
    const { attach, notes } = await planAttach('audit', catalogue.audit, {}, supported, without('syscalls/sys_exit_unlink'))
    assert.ok(attach.some((a) => a.program === 'exit_unlink'))
    assert.deepEqual(notes, [])
  })
})
