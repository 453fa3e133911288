/**
 * How sockdata captures socket data on kernels with different features. The planner
 * (runtime/library/catalogue.ts) decides from the feature probes' answers and the tracepoints
 * the kernel has, so each kernel is a fixed set of answers here; test/bpf/sockdata-paths.test.ts
 * checks this kernel's own.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { AttachKind, FeatureResult } from '../../runtime/bpf/features.ts'
import { catalogue, planAttach, socketFunctions, type PlanOptions } from '../../runtime/library/catalogue.ts'

const FENTRY_REFUSED = 'the kernel refuses fentry programs even with every capability they need (lockdown or policy): EPERM'
const NO_KPROBES = 'kprobes are not available on this kernel (no kprobe PMU, CONFIG_KPROBES off): ENOENT'
const dataSyscalls = ['write', 'read', 'writev', 'readv', 'sendto', 'recvfrom', 'sendmsg', 'recvmsg', 'sendmmsg', 'recvmmsg']

/** A kernel that refuses the attach kinds given, with those reasons, and supports every other. */
function kernel(refused: Partial<Record<AttachKind, string>>): (kind: AttachKind) => Promise<FeatureResult> {
  return async (kind) => {
    const reason = refused[kind]
    return reason === undefined ? { status: 'supported' } : { status: 'unsupported', reason }
  }
}

const BEFORE_6_3 = 'this kernel has no sock/sock_recv_length tracepoint (Linux 6.3)'
/** A kernel with or without the sock_recv_length and sock_send_length tracepoints (Linux 6.3). */
const tracepoints = (socket: boolean) => (name: string) => socket || !name.startsWith('sock/')

const plan = (refused: Partial<Record<AttachKind, string>>, options: PlanOptions = {}, socketTracepoints = false) =>
  planAttach('sockdata', catalogue.sockdata, options, kernel(refused), tracepoints(socketTracepoints))

const fentryPrograms = socketFunctions.flatMap((f) => [`fentry_${f}`, `fexit_${f}`])
const kprobePrograms = socketFunctions.flatMap((f) => [`kprobe_${f}`, `kretprobe_${f}`])
const tracepointPrograms = dataSyscalls.flatMap((s) => [`enter_${s}`, `exit_${s}`])
/** The syscall programs the socket tracepoints' path keeps: the sends' entries, and both ends of sendmmsg and recvmmsg. */
const keptPrograms = ['enter_write', 'enter_writev', 'enter_sendto', 'enter_sendmsg', 'enter_sendmmsg', 'exit_sendmmsg', 'enter_recvmmsg', 'exit_recvmmsg']
const socketTracepointPrograms = ['on_recv_length', 'on_send_length', ...keptPrograms]
/** What every plan attaches besides socket data: lifecycle (closes by close(), exit and exec too), sendfile, state changes, mmap. */
const others = ['enter_sendfile', 'exit_sendfile', 'enter_connect', 'exit_connect', 'enter_accept', 'exit_accept', 'enter_accept4', 'exit_accept4', 'enter_close', 'on_exit', 'on_exec', 'on_state_change', 'on_mmap']

describe('sockdata attach plan', () => {
  it('a kernel that allows fentry captures socket data with fentry/fexit on the socket functions, with the socket tracepoints or without, and loads nothing else for it', async () => {
    for (const socketTracepoints of [true, false]) {
      const { attach, unused, notes } = await plan({}, {}, socketTracepoints)
      assert.deepEqual(attach.map((a) => a.program), [...fentryPrograms, ...others])
      assert.ok(attach.slice(0, fentryPrograms.length).every((a) => a.kind === 'fentry'))
      assert.deepEqual(unused, [...socketTracepointPrograms, ...kprobePrograms, ...tracepointPrograms])
      assert.deepEqual(notes, ['sockdata: socket data from fentry/fexit on inet_sendmsg, inet6_sendmsg, unix_stream_sendmsg, inet_recvmsg, inet6_recvmsg, unix_stream_recvmsg'])
    }
  })

  it('a kernel that refuses fentry but has the socket tracepoints (ours) takes socket data from them, sends\' starts and mmsg calls from syscall tracepoints, kprobes or not, and says why', async () => {
    for (const refused of [{ fentry: FENTRY_REFUSED }, { fentry: FENTRY_REFUSED, kprobe: NO_KPROBES }]) {
      const { attach, unused, notes } = await plan(refused, {}, true)
      assert.deepEqual(attach.slice(0, 2), [{ kind: 'tp_btf', program: 'on_recv_length' }, { kind: 'tp_btf', program: 'on_send_length' }])
      assert.deepEqual(attach.map((a) => a.program), [...socketTracepointPrograms, ...others])
      // the programs the syscall path shares are used, not listed unused: its unused ones are the receives' and the sends' exits
      assert.deepEqual(unused, [...fentryPrograms, ...kprobePrograms,
        'exit_write', 'enter_read', 'exit_read', 'exit_writev', 'enter_readv', 'exit_readv', 'exit_sendto', 'enter_recvfrom', 'exit_recvfrom', 'exit_sendmsg', 'enter_recvmsg', 'exit_recvmsg'])
      assert.deepEqual(notes, [`sockdata: socket data from the sock_recv_length and sock_send_length tracepoints (sends' starts, sendmmsg and recvmmsg from syscall tracepoints) (tp_btf fallback: fentry: ${FENTRY_REFUSED})`])
    }
  })

  it('a kernel that refuses fentry, lacks sock_recv_length and has kprobes uses a kprobe and a kretprobe per socket function, and says why', async () => {
    const { attach, unused, notes } = await plan({ fentry: FENTRY_REFUSED })
    assert.deepEqual(attach.slice(0, kprobePrograms.length), socketFunctions.flatMap((f) => [
      { kind: 'kprobe', program: `kprobe_${f}`, function: f },
      { kind: 'kprobe', program: `kretprobe_${f}`, function: f, retprobe: true },
    ]))
    assert.deepEqual(attach.slice(kprobePrograms.length).map((a) => a.program), others)
    assert.deepEqual(unused, [...fentryPrograms, ...socketTracepointPrograms, ...tracepointPrograms])
    assert.deepEqual(notes, [`sockdata: socket data from kprobes and kretprobes on ${socketFunctions.join(', ')} (kprobe fallback: fentry: ${FENTRY_REFUSED}; tp_btf: ${BEFORE_6_3})`])
  })

  it('a kernel with none of the better ways (no socket tracepoints, fentry refused, no kprobes) takes socket data from the syscall tracepoints, and the run log says why', async () => {
    const { attach, unused, notes } = await plan({ fentry: FENTRY_REFUSED, kprobe: NO_KPROBES })
    assert.deepEqual(attach.map((a) => a.program), [...tracepointPrograms, ...others])
    assert.deepEqual(attach[0], { kind: 'tracepoint', program: 'enter_write', category: 'syscalls', name: 'sys_enter_write' })
    assert.deepEqual(unused, [...fentryPrograms, 'on_recv_length', 'on_send_length', ...kprobePrograms])
    assert.deepEqual(notes, [`sockdata: socket data from syscall tracepoints (tracepoint fallback: fentry: ${FENTRY_REFUSED}; tp_btf: ${BEFORE_6_3}; kprobe: ${NO_KPROBES})`])
  })

  it('a forced attach kind is used where a point offers it, even when a better one is allowed; the other points follow the plan', async () => {
    const forced = await plan({}, { attachKind: 'tracepoint' }, true)
    assert.deepEqual(forced.attach.map((a) => a.program), [...tracepointPrograms, ...others])
    assert.deepEqual(forced.notes, ['sockdata: socket data from syscall tracepoints'])
    const kprobes = await plan({}, { attachKind: 'kprobe' })
    assert.deepEqual(kprobes.attach.map((a) => a.program), [...kprobePrograms, ...others])
  })

  it('a forced attach kind the kernel refuses is an error that says why, not a quiet fallback', async () => {
    await assert.rejects(plan({ fentry: FENTRY_REFUSED }, { attachKind: 'fentry' }), {
      message: `sockdata: no way to observe socket data on this kernel (fentry: ${FENTRY_REFUSED})`,
    })
  })

  it('a point with one way to observe it gets no run-log line; one the kernel cannot observe at all names every reason', async () => {
    const { notes } = await plan({ fentry: FENTRY_REFUSED })
    assert.equal(notes.length, 1)
    await assert.rejects(plan({ fentry: FENTRY_REFUSED, kprobe: NO_KPROBES, tracepoint: 'tracefs is not mounted' }), {
      message: `sockdata: no way to observe socket data on this kernel (fentry: ${FENTRY_REFUSED}; tp_btf: ${BEFORE_6_3}; kprobe: ${NO_KPROBES}; tracepoint: tracefs is not mounted)`,
    })
  })
})
