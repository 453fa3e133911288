/**
 * ctx.onUprobe against the real kernel: plugins trace functions of test/bpf/fixtures/repl-uprobe-target.c
 * and see exactly its calls (argument registers) and returns (return values), in order, of the
 * pid they ask for only; plugins asking the same share one kernel link; the link and its slot go
 * with the last holder; every bad request says what is wrong.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, it } from 'node:test'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { root } from './kernel.ts'
import { decodersPath, plugin, provider } from './plugin-api-fixture.ts'
import { holdProcess, type HeldProcess } from './repl-bpftrace.ts'

const directory = mkdtempSync(join(tmpdir(), 'periscope-plugin-uprobes-'))
process.once('exit', () => rmSync(directory, { recursive: true, force: true }))
const target = join(directory, 'repl-uprobe-target')
execFileSync('gcc', ['-O2', '-o', target, join(root, 'test/bpf/fixtures/repl-uprobe-target.c')])
/** The target, held on its stdin until released; it then makes `rounds` rounds of calls and exits. */
const heldTarget = (rounds: number): HeldProcess => holdProcess(target, [String(rounds)], 'the uprobe target')
const ROUNDS = 5

/** A plugin logging each call of repl_work_add6 (its six arguments) and each return of repl_work_square, and its two link ids first. */
const tracer = (name: string, pid: number) => plugin(name, ['generic_uprobe'], `
    const calls = await ctx.onUprobe({ binary: '${target}', symbol: 'repl_work_add6' }, (e) => {
      ctx.emit.log({ body: ['add6', e.pid === e.tid, e.comm, e.regs.join(','), e.retval, typeof e.nsecs].join(' ') })
    }, { pid: ${pid} })
    const returns = await ctx.onUprobe({ binary: '${target}', symbol: 'repl_work_square', retprobe: true }, (e) => {
      ctx.emit.log({ body: ['square', e.pid === e.tid, e.regs, e.retval].join(' ') })
    }, { pid: ${pid} })
    ctx.emit.log({ body: 'links ' + calls.id + ' ' + returns.id })`)

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

const bodies = (harness: Harness, name: string): string[] => harness.sink.signals(name).logs.map((l) => l.body as string)

describe('ctx.onUprobe', () => {
  it("hands plugins exactly the target's calls and returns, of the pid they ask for, sharing one link per function", async () => {
    const traced = heldTarget(ROUNDS)
    const other = heldTarget(ROUNDS)
    try {
      h = await startHarness({ provider: provider(), decodersPath })
      const harness = h
      const loaded = Promise.all([harness.nextEvent('loaded', 'one'), harness.nextEvent('loaded', 'two')])
      harness.write('one.ts', tracer('one', traced.pid))
      harness.write('two.ts', tracer('two', traced.pid))
      await loaded
      const links = bodies(harness, 'one')[0]!
      assert.match(links, /^links \d+ \d+$/)
      assert.equal(bodies(harness, 'two')[0], links, 'the same two kernel links for both plugins')
      // the other process runs the same functions: the kernel leaves its calls out
      await other.release()
      await traced.release()
      // per round i: add6(i, i + 1, ..., i + 5), then square(i) returns i * i
      const expected = Array.from({ length: ROUNDS }, (_, i) => [
        `add6 true repl-uprobe-tar ${[0, 1, 2, 3, 4, 5].map((k) => i + k).join(',')}  bigint`,
        `square true  ${i * i}`,
      ]).flat()
      await harness.waitFor(() => bodies(harness, 'one').length >= 1 + expected.length && bodies(harness, 'two').length >= 1 + expected.length, 'the calls')
      assert.deepEqual(bodies(harness, 'one').slice(1), expected)
      assert.deepEqual(bodies(harness, 'two').slice(1), expected)
      const generic = () => harness.runtime.bus.listObjects().find((o) => o.name === 'generic_uprobe')
      assert.equal(generic()!.links.length, 2)
      harness.remove('one.ts')
      harness.remove('two.ts')
      await harness.waitFor(() => harness.runtime.manager.list().length === 0, 'both plugins to unload')
      assert.equal(generic(), undefined, 'the object closed with its links')
    } finally {
      traced.kill()
      other.kill()
    }
  })

  it('says what is wrong with a request', async () => {
    h = await startHarness({ provider: provider(), decodersPath })
    const harness = h
    const loaded = harness.nextEvent('loaded', 'bad')
    harness.write('bad.ts', plugin('bad', ['generic_uprobe'], `
    const handler = () => {}
    ctx.emit.log({ body: [
      await codeOf(ctx.onUprobe({ binary: '${target}', symbol: 'no_such_function' }, handler)),
      await codeOf(ctx.onUprobe({ binary: '/nonexistent/binary', symbol: 'main' }, handler)),
      await codeOf(ctx.onUprobe({ binary: 'relative/binary', symbol: 'main' }, handler)),
      await codeOf(ctx.onUprobe({ binary: '${target}', symbol: 'main' }, handler, { pid: -1 })),
    ].join('\\n') })`))
    await loaded
    assert.deepEqual((harness.sink.signals('bad').logs[0]!.body as string).split('\n'), [
      `ENOSYMBOL ENOSYMBOL: ctx.onUprobe(uprobe ${target}:no_such_function): ${target} has no function symbol no_such_function`,
      'ENOENT ENOENT: ctx.onUprobe(uprobe /nonexistent/binary:main): binary /nonexistent/binary: it does not exist',
      'EINVAL EINVAL: ctx.onUprobe(uprobe relative/binary:main): give the binary as an absolute path',
      "EINVAL EINVAL: ctx.onUprobe: give ({ binary: '/absolute/path', symbol: 'name', retprobe?: boolean }, handler, { pid?: number })",
    ])
  })
})
