/**
 * ctx.onTracepoint against the real kernel: a plugin traces syscalls:sys_enter_openat of the
 * workload of test/bpf/fixtures/repl-trace-workload.c (a static binary: no loader opens) and
 * sees exactly its openat calls, in order, with the path copied as a string, while the kernel
 * filters out every other process; plugins share the tracepoint's one link when they ask for the
 * same options and are refused otherwise; a hot reload may change the options; the link goes
 * with the last holder; every bad request says what is wrong.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, it } from 'node:test'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { root } from './kernel.ts'
import { decodersPath, plugin, provider } from './plugin-api-fixture.ts'
import { holdProcess, type HeldProcess } from './repl-bpftrace.ts'

const PATHS = 4
/** the workload's openat calls, in order: path j j + 2 times, then the end marker */
const OPENED = [...Array.from({ length: PATHS }, (_, j) => Array<string>(j + 2).fill(`/nonexistent/periscope-trace/${j}`)).flat(), '/nonexistent/periscope-trace/end']

const workloadDir = mkdtempSync(join(tmpdir(), 'periscope-plugin-tracepoint-'))
process.once('exit', () => rmSync(workloadDir, { recursive: true, force: true }))
chmodSync(workloadDir, 0o755)
/** its comm, unique to these tests */
const WORKLOAD = 'pscope-tp-plug'
execFileSync('cc', ['-O2', '-Wall', '-Werror', '-static', '-o', join(workloadDir, WORKLOAD), join(root, 'test/bpf/fixtures/repl-trace-workload.c')])
const heldWorkload = (): HeldProcess => holdProcess(join(workloadDir, WORKLOAD), [String(PATHS)], WORKLOAD)

/**
 * A plugin logging one line per openat it is handed: pid, tid, comm, the path (or the type of
 * the field when it is not a string), and the types of two more fields; and its link id first.
 */
const opener = (name: string, options: string, first = 'link') => plugin(name, ['generic'], `
    const link = await ctx.onTracepoint('syscalls:sys_enter_openat', (e) => {
      const path = typeof e.args.filename === 'string' ? e.args.filename : typeof e.args.filename
      ctx.emit.log({ body: [e.pid, e.tid, e.comm, path, typeof e.args.flags, typeof e.nsecs].join(' ') })
    }, ${options})
    ctx.emit.log({ body: '${first} ' + link.id })`)

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

const bodies = (harness: Harness, name: string): string[] => harness.sink.signals(name).logs.map((l) => l.body as string)

/** The failure (a first version's) or rejection (a new version's) `plugin` met, once it came. */
async function refusal(harness: Harness, plugin: string, after: number): Promise<string> {
  const refused = () => harness.events.slice(after).find((e) => (e.type === 'failed' || e.type === 'rejected') && e.plugin === plugin)
  await harness.waitFor(() => refused() !== undefined, `${plugin} to be refused`)
  const event = refused()!
  return event.type === 'failed' ? event.failure.message : event.type === 'rejected' ? event.error.message : ''
}

describe('ctx.onTracepoint', () => {
  it("hands a plugin exactly the workload's openat calls, filtered in the kernel by pid or comm, with the path copied", async () => {
    const byPid = heldWorkload()
    const byComm = heldWorkload()
    try {
      h = await startHarness({ provider: provider(), decodersPath })
      const harness = h
      const loaded = harness.nextEvent('loaded', 'bypid')
      harness.write('bypid.ts', opener('bypid', `{ pid: ${byPid.pid}, strings: ['filename'] }`))
      await loaded
      // bycomm asks for other options on the same tracepoint: refused, and it says why
      const before = harness.events.length
      harness.write('bycomm.ts', opener('bycomm', `{ comm: '${WORKLOAD}', strings: ['filename'] }`))
      assert.match(await refusal(harness, 'bycomm', before), /EBUSY: ctx\.onTracepoint\('syscalls:sys_enter_openat'\): plugin bypid traces it with other options/)
      await byPid.release()
      const expected = OPENED.map((path) => `${byPid.pid} ${byPid.pid} ${WORKLOAD} ${path} bigint bigint`)
      await harness.waitFor(() => bodies(harness, 'bypid').length >= 1 + expected.length, 'the openat calls')
      const link = bodies(harness, 'bypid')[0]!
      assert.match(link, /^link \d+$/)
      assert.deepEqual(bodies(harness, 'bypid').slice(1), expected)

      // the first plugin goes, and with it the link: the second now gets its own options
      const reloaded = harness.nextEvent('loaded', 'bycomm')
      harness.remove('bypid.ts')
      await harness.waitFor(() => !harness.runtime.manager.list().some((p) => p.name === 'bypid'), 'bypid to unload')
      harness.write('bycomm.ts', opener('bycomm', `{ comm: '${WORKLOAD}', strings: ['filename'] }`))
      await reloaded
      await byComm.release()
      await harness.waitFor(() => bodies(harness, 'bycomm').length >= 1 + OPENED.length, 'the openat calls by comm')
      assert.deepEqual(bodies(harness, 'bycomm').slice(1), OPENED.map((path) => `${byComm.pid} ${byComm.pid} ${WORKLOAD} ${path} bigint bigint`))
    } finally {
      byPid.kill()
      byComm.kill()
    }
  })

  it('shares one link between plugins asking for the same options, lets a hot reload change them once no other plugin shares it, and detaches with the last', async () => {
    const first = heldWorkload()
    const second = heldWorkload()
    try {
      h = await startHarness({ provider: provider(), decodersPath })
      const harness = h
      const loaded = Promise.all([harness.nextEvent('loaded', 'one'), harness.nextEvent('loaded', 'two')])
      harness.write('one.ts', opener('one', `{ pid: ${first.pid} }`))
      harness.write('two.ts', opener('two', `{ pid: ${first.pid} }`))
      await loaded
      const [one, two] = [bodies(harness, 'one')[0]!, bodies(harness, 'two')[0]!]
      assert.equal(one, two, 'one kernel link for both')
      const generic = () => harness.runtime.bus.listObjects().find((o) => o.name === 'generic')
      assert.deepEqual(generic()!.links.map((l) => l.id), [Number(one.slice('link '.length))])

      // a new version of `two` for another process: `one` shares the tracepoint, so it is refused
      // and the old version carries on
      const before = harness.events.length
      harness.write('two.ts', opener('two', `{ pid: ${second.pid} }`, 'relinked'))
      assert.match(await refusal(harness, 'two', before), /EBUSY: .*plugin one traces it with other options/)
      await first.release()
      // without `strings` the path is the pointer, a bigint
      const firstCalls = OPENED.map(() => `${first.pid} ${first.pid} ${WORKLOAD} bigint bigint bigint`)
      await harness.waitFor(() => bodies(harness, 'one').length >= 1 + OPENED.length && bodies(harness, 'two').length >= 1 + OPENED.length, "the first workload's calls")
      assert.deepEqual(bodies(harness, 'one').slice(1), firstCalls)
      assert.deepEqual(bodies(harness, 'two').slice(1), firstCalls)

      // once `one` is gone, the same new version of `two` loads, with its own options
      harness.remove('one.ts')
      await harness.waitFor(() => !harness.runtime.manager.list().some((p) => p.name === 'one'), 'one to unload')
      const reloaded = harness.nextEvent('loaded', 'two')
      harness.write('two.ts', opener('two', `{ pid: ${second.pid} }`, 'relinked'))
      await reloaded
      await second.release()
      await harness.waitFor(() => bodies(harness, 'two').length >= 2 + 2 * OPENED.length, "the second workload's calls")
      assert.deepEqual(bodies(harness, 'two').slice(1 + OPENED.length), [`relinked ${one.slice('link '.length)}`, ...OPENED.map(() => `${second.pid} ${second.pid} ${WORKLOAD} bigint bigint bigint`)])

      harness.remove('two.ts')
      await harness.waitFor(() => harness.runtime.manager.list().length === 0, 'two to unload')
      assert.equal(generic(), undefined, 'the generic object closed with its link')
    } finally {
      first.kill()
      second.kill()
    }
  })

  it('says what is wrong with a request', async () => {
    h = await startHarness({ provider: provider(), decodersPath })
    const harness = h
    const loaded = harness.nextEvent('loaded', 'bad')
    const before = harness.events.length
    harness.write('bad.ts', plugin('bad', ['generic'], `
    const handler = () => {}
    ctx.emit.log({ body: [
      await codeOf(ctx.onTracepoint('syscalls:sys_enter_nothing', handler)),
      await codeOf(ctx.onTracepoint('syscalls:sys_enter_openat', handler, { comm: 'a-name-longer-than-15' })),
      await codeOf(ctx.onTracepoint('syscalls:sys_enter_openat', handler, { strings: ['flags'] })),
      await codeOf(ctx.onTracepoint('syscalls:sys_enter_openat', handler, { pid: -1 })),
      await codeOf(ctx.onTracepoint('openat', handler)),
    ].join('\\n') })`))
    harness.write('nogeneric.ts', plugin('nogeneric', [], "await ctx.onTracepoint('syscalls:sys_enter_openat', () => {})"))
    await loaded
    assert.deepEqual((harness.sink.signals('bad').logs[0]!.body as string).split('\n'), [
      "ENOENT ENOENT: ctx.onTracepoint('syscalls:sys_enter_nothing'): no tracepoint syscalls:sys_enter_nothing: /sys/kernel/tracing/events/syscalls/sys_enter_nothing/format does not exist; list the tracepoints with probes('syscalls:*')",
      'EINVAL EINVAL: ctx.onTracepoint(\'syscalls:sys_enter_openat\'): syscalls:sys_enter_openat: the comm filter "a-name-longer-than-15" can never match: the kernel keeps at most 15 bytes of a task\'s name',
      "EINVAL EINVAL: ctx.onTracepoint('syscalls:sys_enter_openat'): syscalls:sys_enter_openat: flags is neither a pointer nor a __data_loc field of the format, so it has no string to copy (those fields: filename)",
      "EINVAL EINVAL: ctx.onTracepoint: give ('<category>:<name>', handler, { pid?: number, comm?: string, uid?: number, strings?: string[] })",
      "undefined ctx.onTracepoint('openat'): name the tracepoint as '<category>:<name>', like 'syscalls:sys_enter_openat'",
    ])
    assert.match(await refusal(harness, 'nogeneric', before), /EACCES: ctx\.onTracepoint\('syscalls:sys_enter_openat'\): the generic object captures tracepoints; add 'generic' to this plugin's objects/)
  })
})
