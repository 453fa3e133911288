/**
 * ctx.attach with `at: 'returns'` on the real kernel: a uprobe program at each return instruction
 * of a Go function of a stripped binary (found in .gopclntab, returns by decoding), through
 * uprobe_multi and through classic uprobes. The Go fixture moves its goroutine stacks while the
 * probed function runs, which is what a uretprobe cannot survive: the test shows that too. Each
 * call is seen exactly once, at the return instruction of its path, with its result in RAX; also
 * after the privilege drop, as Periscope attaches to Go programs that start later.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterEach, before, describe, it, type TestContext } from 'node:test'
import { probeAttach } from '../../runtime/bpf/features.ts'
import { UPROBE_MULTI_ATTACH_TYPE } from '../../runtime/bpf/links.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import type { ObjectProvider } from '../../runtime/bus.ts'
import { LibraryObject } from '../../runtime/library/index.ts'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { goFixture, goTool, runGoFixture, type GoFixtureBuild } from './go-fixture.ts'
import { compileFixture, requireFeature, root } from './kernel.ts'

const fixture = compileFixture('uprobe-returns')
const decodersPath = join(root, 'bpf/lib/index.types.ts')

/** The fixture as object `goreturns`, its uprobe program loaded for uprobe_multi links or for classic uprobes. */
function provider(links: 'uprobe_multi' | 'classic'): ObjectProvider & { opened: Map<string, LibraryObject> } {
  const opened = new Map<string, LibraryObject>()
  return {
    opened,
    async open(name) {
      if (name !== 'goreturns') throw new Error(`this test serves only object goreturns, not ${name}`)
      const spec = await ObjectSpec.open(fixture)
      if (links === 'uprobe_multi') spec.setExpectedAttachType('on_return', UPROBE_MULTI_ATTACH_TYPE)
      const object = new LibraryObject(name, await spec.load(), [], () => {})
      opened.set(name, object)
      return object
    },
  }
}

/** A plugin whose setup attaches per `requests` and logs each outcome: the link id, or the error's code and message. */
function attachingPlugin(requests: object[]): string {
  return `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'returns',
  objects: ['goreturns'],
  async setup(ctx) {
    for (const request of ${JSON.stringify(requests)}) {
      try {
        const link = await ctx.attach(request as never)
        ctx.emit.log({ body: 'attached', attributes: { id: link.id } })
      } catch (error) {
        ctx.emit.log({ body: (error as { code?: string }).code + ' ' + (error as Error).message })
      }
    }
  },
})
`
}

/** (return instruction address, RAX) -> hits, from the fixture's map. */
function hits(object: LibraryObject): Map<string, number> {
  const counted = new Map<string, number>()
  for (const [key, value] of object.map('returns').entries()) {
    const k = Buffer.from(key)
    counted.set(`0x${k.readBigUInt64LE(0).toString(16)} ${k.readBigInt64LE(8)}`, Number(Buffer.from(value).readBigUInt64LE(0)))
  }
  return counted
}

/** go tool objdump's RET lines of `name`: source line -> address. */
async function returnsByLine(binary: string, name: string): Promise<Map<number, string>> {
  const listing = await goTool('objdump', '-s', `^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, binary)
  const byLine = new Map<number, string>()
  for (const line of listing.split('\n')) {
    const match = /^\s+\S+:(\d+)\s+0x([0-9a-f]+)\s+[0-9a-f]+\s+RET\b/.exec(line)
    if (match !== null) byLine.set(Number(match[1]), `0x${match[2]}`)
  }
  return byLine
}

/** The line of the fixture's main.go that holds `statement`. */
function sourceLine(statement: string): number {
  const lines = readFileSync(join(root, 'test/bpf/fixtures/go/main.go'), 'utf8').split('\n')
  const index = lines.findIndex((l) => l.trim() === statement)
  assert.ok(index >= 0, `main.go has "${statement}"`)
  return index + 1
}

/** What classify(n) returns, and from which of its return statements. */
function classify(n: number): { value: number; statement: string } {
  if (n % 3 === 0) return { value: n * 10, statement: 'return n * 10' }
  if (n % 3 === 1) return { value: 64 * 65 / 2 + n, statement: 'return grow(64) + n' }
  return { value: -n, statement: 'return -n' }
}

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

let builds: Record<GoFixtureBuild, string>
before(async () => {
  builds = await goFixture()
})

const CALLS = 30

async function requireLinks(t: TestContext, links: 'uprobe_multi' | 'classic'): Promise<boolean> {
  return requireFeature(t, links === 'classic' ? 'uprobe' : 'uprobe_multi', await probeAttach(links === 'classic' ? 'uprobe' : 'uprobe_multi'))
}

describe('ctx.attach at: \'returns\' on a stripped Go binary', () => {
  for (const links of ['uprobe_multi', 'classic'] as const) {
    it(`${links}: each call of main.classify seen once, at its path's RET, with its result; the program runs to its end`, async (t) => {
      if (!await requireLinks(t, links)) return
      const binary = builds.stripped
      const run = runGoFixture(binary, 'classify', [CALLS])
    t.after(() => run.stop())
      t.after(() => run.stop())
      const p = provider(links)
      h = await startHarness({ provider: p, decodersPath })
      const harness = h
      const loaded = harness.nextEvent('loaded', 'returns')
      harness.write('returns.ts', attachingPlugin([{ program: 'goreturns:on_return', uprobe: { binary, symbol: 'main.classify', at: 'returns', pid: run.pid } }]))
      await loaded
      assert.equal(harness.sink.signals('returns').logs[0]?.body, 'attached')
      const object = p.opened.get('goreturns')!
      const target = `uprobe ${binary}:main.classify (3 returns) pid ${run.pid}`
      assert.deepEqual(harness.runtime.bus.uprobes.list().map((l) => [l.attach, l.holds]), [[target, 1]])
      assert.equal(object.links().length, links === 'classic' ? 3 : 1, 'one uprobe_multi link, or a classic uprobe per return')
      // what `periscope links` shows: the hold, once, however many kernel links make it
      assert.deepEqual(harness.runtime.bus.listObjects().find((o) => o.name === 'goreturns')!.links,
        [{ id: harness.sink.signals('returns').logs[0]!.attributes!.id, program: 'on_return', attach: target }])

      run.release()
      const expectedSum = Array.from({ length: CALLS }, (_, n) => classify(n).value).reduce((a, b) => a + b, 0)
      assert.equal(await run.exited, String(expectedSum), 'the program ran to its end: nothing on its stacks was disturbed')

      // the plain build is the same code at the same addresses, with the symbols objdump needs
      const rets = await returnsByLine(builds.plain, 'main.classify')
      const expected = new Map<string, number>()
      for (let n = 0; n < CALLS; n++) {
        const { value, statement } = classify(n)
        const key = `${rets.get(sourceLine(statement))} ${value}`
        expected.set(key, (expected.get(key) ?? 0) + 1)
      }
      assert.deepEqual(hits(object), expected)

      const unloaded = harness.nextEvent('unloaded', 'returns')
      harness.remove('returns.ts')
      await unloaded
      assert.deepEqual(harness.runtime.bus.uprobes.list(), [])
      assert.deepEqual(object.links(), [], 'every return\'s uprobe went with the hold')
    })
  }

  it('uprobe_multi: crypto/tls.(*Conn).Write and Read each seen at their returns, with the bytes each wrote and read', async (t) => {
    if (!await requireLinks(t, 'uprobe_multi')) return
    const binary = builds.stripped
    const sizes = [5, 300, 1200, 16000]
    const run = runGoFixture(binary, 'tls', sizes)
    t.after(() => run.stop())
    const p = provider('uprobe_multi')
    h = await startHarness({ provider: p, decodersPath })
    const loaded = h.nextEvent('loaded', 'returns')
    h.write('returns.ts', attachingPlugin(['crypto/tls.(*Conn).Write', 'crypto/tls.(*Conn).Read'].map((symbol) =>
      ({ program: 'goreturns:on_return', uprobe: { binary, symbol, at: 'returns', pid: run.pid } }))))
    await loaded
    assert.deepEqual(h.sink.signals('returns').logs.map((l) => l.body), ['attached', 'attached'])
    run.release()
    assert.equal(await run.exited, String(sizes.reduce((a, b) => a + b, 0)))

    const writeRets = new Set((await returnsByLine(builds.plain, 'crypto/tls.(*Conn).Write')).values())
    const readRets = new Set((await returnsByLine(builds.plain, 'crypto/tls.(*Conn).Read')).values())
    const seen: Record<'write' | 'read', number[]> = { write: [], read: [] }
    for (const [key, count] of hits(p.opened.get('goreturns')!)) {
      const [ip, value] = key.split(' ') as [string, string]
      const side = writeRets.has(ip) ? 'write' : readRets.has(ip) ? 'read' : assert.fail(`${ip} is no RET of Write or Read`)
      for (let i = 0; i < count; i++) seen[side].push(Number(value))
    }
    const sorted = (values: number[]) => values.sort((a, b) => a - b)
    assert.deepEqual(sorted(seen.write), sizes, 'each Write returned the bytes it wrote')
    assert.deepEqual(sorted(seen.read), sizes, 'each Read returned one whole message')
  })

  it('a uretprobe on the same function, in contrast, crashes the program', async (t) => {
    if (!await requireLinks(t, 'classic')) return
    const binary = builds.stripped
    const run = runGoFixture(binary, 'classify', [CALLS])
    t.after(() => run.stop())
    h = await startHarness({ provider: provider('classic'), decodersPath })
    const loaded = h.nextEvent('loaded', 'returns')
    h.write('returns.ts', attachingPlugin([{ program: 'goreturns:on_uretprobe', uprobe: { binary, symbol: 'main.classify', retprobe: true, pid: run.pid } }]))
    await loaded
    assert.equal(h.sink.signals('returns').logs[0]?.body, 'attached')
    run.release()
    // the runtime finds the kernel's trampoline address where main.classify's caller should be:
    // the stack copier stops there, or a moved frame returns into the trampoline and faults
    await assert.rejects(run.exited, /exited 2: (runtime: g \d+: unexpected return pc for main\.classify called from 0x|SIGILL: |SIGSEGV: |fatal error: )/)
  })

  it('refuses what cannot go at return instructions, with a code the plugin can test', async (t) => {
    if (!await requireLinks(t, 'classic')) return
    const binary = builds.stripped
    h = await startHarness({ provider: provider('classic'), decodersPath })
    const loaded = h.nextEvent('loaded', 'returns')
    h.write('returns.ts', attachingPlugin([
      { program: 'goreturns:on_uretprobe', uprobe: { binary, symbol: 'main.classify', retprobe: true, at: 'returns' } },
      { program: 'goreturns:on_return', uprobe: { binary, symbol: 'main.classify', retprobe: true, at: 'returns' } },
      { program: 'goreturns:on_return', uprobe: { binary, symbol: 'main.classify', at: 'exit' } },
      { program: 'goreturns:on_return', uprobe: { binary, symbol: 'main.nothing', at: 'returns' } },
    ]))
    await loaded
    const what = (program: string, symbol = 'main.classify') => `ctx.attach(goreturns:${program} on ${binary}:${symbol} at its returns)`
    assert.deepEqual(h.sink.signals('returns').logs.map((l) => l.body), [
      `EINVAL EINVAL: ${what('on_uretprobe')}: at: 'returns' runs a uprobe program (SEC("uprobe")) at each return instruction, in place of a uretprobe; program 'on_uretprobe' is a uretprobe program`,
      `EINVAL EINVAL: ${what('on_return')}: at: 'returns' runs a uprobe program (SEC("uprobe")) at each return instruction, in place of a uretprobe; do not pass retprobe: true with it`,
      'EINVAL EINVAL: ctx.attach: give { program: \'<object>:<program>\', uprobe: { binary: \'/absolute/path\', symbol: \'name\', retprobe?: boolean, at?: \'entry\' | \'returns\', pid?: number } }',
      `ENOSYMBOL ENOSYMBOL: ${what('on_return', 'main.nothing')}: ${binary} has no function symbol main.nothing`,
    ])
    assert.deepEqual(h.runtime.bus.uprobes.list(), [])
  })

  it('after the privilege drop, attaches at the returns of a function of a binary only root may read, and counts every call', async (t) => {
    if (!await requireLinks(t, 'uprobe_multi')) return
    const dir = mkdtempSync(join(tmpdir(), 'periscope-returns-root-only-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    assert.equal(statSync(dir).mode & 0o777, 0o700, 'only root may enter the binary\'s directory')
    const binary = join(dir, 'gofixture')
    copyFileSync(builds.stripped, binary)
    const { stdout } = await promisify(execFile)(process.execPath,
      [join(root, 'test/bpf/fixtures/uprobe-returns-after-drop.ts'), fixture, binary, join(dir, 'data'), String(CALLS)], { timeout: 300_000 })
    const result = JSON.parse(stdout) as { dropped: boolean; uid: string; attach: string; returns: number; targetExit: number; printed: string }
    assert.deepEqual(result, {
      dropped: true,
      uid: '65534',
      attach: '1 link, 3 returns',
      returns: CALLS,
      targetExit: 0,
      printed: String(Array.from({ length: CALLS }, (_, n) => classify(n).value).reduce((a, b) => a + b, 0)),
    })
  })
})
