/**
 * The plugin API for stacks against the real kernel: ctx.attach of a perf_event program (one
 * hold, a link per CPU, detached with the last holder), ctx.onStack (samples unwound by the host,
 * filtered in the kernel by a claimed target_pids entry) and ctx.symbolize (kernel and user
 * frames named), on a C burner whose only call chain is known; and every malformed request
 * refused on the host with a message saying what is wrong.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { join } from 'node:path'
import { afterEach, describe, it } from 'node:test'
import { probeAttach } from '../../runtime/bpf/features.ts'
import { onlineCpus } from '../../runtime/bpf/links.ts'
import { bootTimeNs } from '../../runtime/bpf/clock.ts'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { requireFeature, root } from './kernel.ts'
import { decodersPath, plugin, provider } from './plugin-api-fixture.ts'
import { useBurner } from './unwind-burner.ts'

const burner = useBurner('periscope-stack-api-', ['-fno-omit-frame-pointer'])
let h: Harness | undefined

afterEach(async () => {
  await h?.close()
  h = undefined
})

/** A plugin that profiles `pid` at 99 Hz until it has `count` samples, then names their distinct stacks and logs what it saw. */
function profiler(name: string, pid: number, count: number): string {
  return plugin(name, ['stacks'], `
    await ctx.map('stacks:target_pids').claim(u32(${pid}), new Uint8Array([1]))
    await ctx.map('stacks:filter').claim(u32(0), u32(1))
    const link = await ctx.attach({ program: 'stacks:on_cpu_sample', perfEvent: { frequency: 99 } })
    const samples: import('periscope/plugin').StackSample[] = []
    let reported = false
    ctx.onStack('stacks:samples', (sample) => { if (samples.length < ${count}) samples.push(sample) })
    ctx.every('100ms', async () => {
      if (reported || samples.length < ${count}) return
      reported = true
      const distinct = new Map<string, import('periscope/plugin').StackSample>()
      for (const s of samples) distinct.set(s.user.join(',') + '|' + s.kernel.join(','), s)
      const named = await ctx.symbolize([...distinct.values()].map((s) => ({ pid: s.pid, user: s.user, kernel: s.kernel })))
      ctx.emit.log({ body: 'profiled', attributes: {
        link: link.id,
        pids: [...new Set(samples.map((s) => s.pid))],
        comms: [...new Set(samples.map((s) => s.comm))],
        values: [...new Set(samples.map((s) => s.value))],
        truncated: samples.filter((s) => s.truncated !== undefined).map((s) => s.truncated!),
        firstNs: Math.min(...samples.map((s) => s.timeNs)),
        lastNs: Math.max(...samples.map((s) => s.timeNs)),
        cpus: [...new Set(samples.map((s) => s.cpu))],
        stacks: named.map((frames) => frames.map((f) => f.function ?? '?').join(' < ')),
        modules: [...new Set(named.flatMap((frames) => frames.map((f) => f.mapping?.file ?? '')))],
      } })
    })`)
}

describe('ctx.attach perfEvent, ctx.onStack and ctx.symbolize on the kernel', () => {
  it('samples only the claimed process, unwinds every stack through main, names the frames, and detaches with the last holder', async (t) => {
    if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
    const p = provider()
    h = await startHarness({ provider: p, decodersPath })
    const harness = h
    const startNs = Number(bootTimeNs())
    const loaded = harness.nextEvent('loaded', 'prof')
    harness.write('prof.ts', profiler('prof', burner.pid, 100))
    await loaded
    await harness.waitFor(() => harness.sink.signals('prof').logs.length > 0, 'the profiler plugin to report 100 samples', 120_000)
    const report = harness.sink.signals('prof').logs[0]!.attributes as Record<string, unknown>
    const object = p.opened.get('stacks')!
    // one hold: a kernel link per online CPU, the first one's id handed to the plugin
    const links = object.links()
    assert.equal(links.length, onlineCpus().length)
    assert.equal(links[0]!.id, report.link)
    assert.match(links[0]!.attach, /^perf_event type 1 config 0 cpu \d+$/)

    assert.deepEqual(report.pids, [burner.pid], 'the kernel filter passes the claimed process only')
    assert.deepEqual(report.comms, ['burner'])
    assert.deepEqual(report.values, [1], 'a CPU sample weighs one')
    assert.deepEqual(report.truncated, [], 'every stack of the burner is whole')
    assert.ok((report.firstNs as number) >= startNs && (report.lastNs as number) <= Number(bootTimeNs()), 'sample times are boot-clock ns of this run')
    const stacks = report.stacks as string[]
    for (const stack of stacks) {
      // the burner makes no system call: kernel frames only of an interrupt it took, then its only
      // call chain, from wherever the sample fell in it (main's loop around middle() too: seen in CI)
      assert.match(stack, /^(.* < asm_\w+ < )?(((hot_loop|cold_loop) < )?middle < )?main < /, stack)
      assert.match(stack, / < _start$/, stack)
    }
    assert.ok((report.modules as string[]).includes(burner.path))

    const unloaded = harness.nextEvent('unloaded', 'prof')
    harness.remove('prof.ts')
    await unloaded
    assert.deepEqual(object.links(), [], 'the last holder detached every CPU\'s link')
  })

  it('names kernel frames of a process in system calls', async (t) => {
    if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
    const reader = join(burner.work, 'syscall-burner')
    execFileSync('cc', ['-O2', '-fno-omit-frame-pointer', '-o', reader, join(root, 'test/bpf/fixtures/syscall-burner.c')])
    // one-byte reads: most of its time in the kernel's read path
    const dd = spawn(reader, { stdio: 'ignore' })
    t.after(() => dd.kill('SIGKILL'))
    h = await startHarness({ provider: provider(), decodersPath })
    const harness = h
    harness.write('sys.ts', profiler('sys', dd.pid!, 60))
    await harness.waitFor(() => harness.sink.signals('sys').logs.length > 0, 'the profiler plugin to report 60 samples of the reader', 120_000)
    const stacks = (harness.sink.signals('sys').logs[0]!.attributes as { stacks: string[] }).stacks
    const inKernel = stacks.filter((s) => /(^|< )(ksys_read|vfs_read)\b/.test(s))
    assert.ok(inKernel.length > 0, `kernel frames of read in the reader's stacks: ${stacks.slice(0, 10).join('\n')}`)
    for (const stack of inKernel) {
      // the kernel frames first, then the user frames from libc's read up to main
      assert.match(stack, /ksys_read < do_syscall_64 < entry_SYSCALL_64\w* < (__GI___libc_read|read|__read)\b.* < read_bytes < main < .* < _start$/, stack)
    }
  })

  it('refuses malformed requests on the host, saying what is wrong', async (t) => {
    if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
    h = await startHarness({ provider: provider(), decodersPath })
    const harness = h
    const attach = (request: string) => `await codeOf(ctx.attach(${request}))`
    const symbolize = (input: string) => `await codeOf(ctx.symbolize(${input}))`
    // ctx.symbolize answers only after a setup that listened to stack samples: the calls run from a timer
    harness.write('wrong.ts', plugin('wrong', ['stacks', 'pluginapi'], `
    ctx.onStack('stacks:samples', () => {})
    const attached = [
      ${attach("{ program: 'stacks:on_cpu_sample', perfEvent: { frequency: 0 } }")},
      ${attach("{ program: 'stacks:on_cpu_sample', perfEvent: { frequency: 1001 } }")},
      ${attach("{ program: 'stacks:on_cpu_sample', perfEvent: { frequency: 9.5 } }")},
      ${attach("{ program: 'stacks:on_cpu_sample', perfEvent: { frequency: 99, pid: -1 } }")},
      ${attach("{ program: 'pluginapi:not_a_uprobe', perfEvent: { frequency: 99 } }")},
      ${attach("{ program: 'stacks:missing', perfEvent: { frequency: 99 } }")},
      ${attach("{ program: 'exec:handle_exec', perfEvent: { frequency: 99 } }")},
    ]
    let reported = false
    ctx.every(20, async () => {
      if (reported) return
      reported = true
      ctx.emit.log({ body: [
        ...attached,
        ${symbolize("'stacks' as never")},
        ${symbolize('[{ pid: -1, user: [] }]')},
        ${symbolize("[{ pid: 1, user: ['0x1000' as never] }]")},
        ${symbolize('[{ pid: 1, user: [4096], kernel: [1] as never }]')},
        ${symbolize('[{ pid: 1, user: new Array(257).fill(4096) }]')},
        ${symbolize('new Array(20001).fill({ pid: 1, user: [] })')},
        ${symbolize('[]')},
      ].join('\\n') })
    })`))
    // a plugin that does not listen to stack samples may not name any process's addresses
    harness.write('nosy.ts', plugin('nosy', ['stacks'], `
    let reported = false
    ctx.every(20, async () => {
      if (reported) return
      reported = true
      ctx.emit.log({ body: ${symbolize('[{ pid: 1, user: [4096] }]')} })
    })`))
    await harness.waitFor(() => harness.sink.signals('nosy').logs.length > 0, 'the nosy plugin to report', 30_000)
    assert.equal(harness.sink.signals('nosy').logs[0]!.body,
      'EACCES EACCES: ctx.symbolize: only a plugin that listens to stack samples may name stacks; call ctx.onStack during setup, and ctx.symbolize after it (from ctx.every or a handler)')
    await harness.waitFor(() => harness.sink.signals('wrong').logs.length > 0, 'the plugin to report', 30_000)
    const lines = (harness.sink.signals('wrong').logs[0]!.body as string).split('\n')
    const usage = "ctx.attach: give { program: '<object>:<program>', perfEvent: { frequency: <integer Hz from 1 to 1000>, pid?: <thread id> } }"
    const stackUsage = 'ctx.symbolize: give [{ pid: number, user: number[], kernel?: bigint[] }, ...]'
    assert.deepEqual(lines, [
      `EINVAL EINVAL: ${usage}; frequency 0 is not an integer from 1 to 1000`,
      `EINVAL EINVAL: ${usage}; frequency 1001 is not an integer from 1 to 1000`,
      `EINVAL EINVAL: ${usage}; frequency 9.5 is not an integer from 1 to 1000`,
      `EINVAL EINVAL: ${usage}`,
      "EINVAL EINVAL: ctx.attach(pluginapi:not_a_uprobe at 99 Hz): program 'not_a_uprobe' is a 'tracepoint/sched/sched_process_fork' program, not a perf_event one; its perf_event programs: none",
      "ENOENT ENOENT: ctx.attach(stacks:missing at 99 Hz): object 'stacks' has no program 'missing'; its perf_event programs: on_cpu_sample",
      "EACCES EACCES: ctx.attach('exec:handle_exec'): object 'exec' is not in this plugin's objects; add it to objects: [...]",
      `undefined ${stackUsage}, not string`,
      `undefined ${stackUsage}; stack 0 has pid -1`,
      `undefined ${stackUsage}; stack 0's user frames must be at most 256 non-negative integer addresses`,
      `undefined ${stackUsage}; stack 0's kernel frames must be at most 64 64-bit bigint addresses`,
      `undefined ${stackUsage}; stack 0's user frames must be at most 256 non-negative integer addresses`,
      'undefined ctx.symbolize: 20001 stacks in one call, at most 20000; name distinct stacks only, in several calls if need be',
      'ok',
    ])
  })

  it('refuses ctx.onStack on a stream whose records are not stack samples', async () => {
    h = await startHarness({ provider: provider(), decodersPath })
    const rejected = h.nextEvent('rejected', 'notstacks')
    h.write('notstacks.ts', plugin('notstacks', ['loopgen'], "ctx.onStack('loopgen:events', () => {})"))
    const event = await rejected as { error: Error }
    assert.match(event.error.message, /ctx\.onStack\('loopgen:events'\): EINVAL: its records are struct \w+, not struct stack_sample \(bpf\/lib\/stacks\.h\); listen to it with ctx\.on/)
  })
})
