/**
 * Claims, attach, iterate and drain are checked on the host against the objects acquired for the
 * calling version, like subscriptions and map calls: a plugin that patches the builtins its
 * bootstrap uses still cannot claim, drain, attach or iterate in an object it does not hold.
 */
import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import type { LibraryObject } from '../../runtime/bus.ts'
import { type Harness, startHarness } from '../plugin-harness.ts'
import { SyntheticProvider } from '../plugin-fixtures/synthetic.ts'

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

/** The synthetic objects, with a uprobe and an iterator program that record every use. */
class RecordingProvider extends SyntheticProvider {
  readonly uses: string[] = []

  override async open(name: string): Promise<LibraryObject> {
    const object = await super.open(name)
    return Object.assign(object, {
      programs: () => [{ name: 'probe', section: 'uprobe' }, { name: 'walk', section: 'iter/task' }],
      attachUprobe: (program: string) => {
        this.uses.push(`attach ${name}:${program}`)
        return { id: 1, detach: () => { this.uses.push(`detach ${name}:${program}`) } }
      },
      runIterator: async (program: string) => {
        this.uses.push(`iterate ${name}:${program}`)
        return 'secret\n'
      },
    })
  }
}

describe('plugin API permissions are checked on the host', () => {
  it('a plugin that patches String.prototype.split and Set.prototype.has cannot claim, drain, attach or iterate in an object it does not hold', async () => {
    const provider = new RecordingProvider(['gen', 'secret'])
    h = await startHarness({
      provider,
      plugins: {
        'holder.ts': `import { definePlugin } from 'periscope/plugin'
export default definePlugin({ name: 'holder', objects: ['secret'], setup(ctx) { ctx.every('1s', () => {}) } })
`,
      },
    })
    const harness = h
    await harness.waitFor(() => harness.runtime.manager.list().some((p) => p.name === 'holder' && p.status === 'running'), 'the holder to run')
    provider.object('secret').map('counts').update(new Uint8Array(4), new Uint8Array(8).fill(3))
    const loaded = harness.nextEvent('loaded', 'spy')
    harness.write('spy.ts', `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'spy',
  objects: ['gen'],
  async setup(ctx) {
    String.prototype.split = function () { return ['gen'] } as never
    Set.prototype.has = () => true
    const codeOf = async (p: () => Promise<unknown>) => { try { await p(); return 'ok' } catch (e) { return (e as { code?: string }).code + ' ' + (e as Error).message } }
    ctx.emit.log({ body: [
      await codeOf(() => ctx.map('secret:counts').claim(new Uint8Array(4), new Uint8Array(8).fill(9))),
      await codeOf(() => ctx.map('secret:counts').drain()),
      await codeOf(() => ctx.attach({ program: 'secret:probe', uprobe: { binary: '/bin/true', symbol: 'main' } })),
      await codeOf(() => ctx.iterate('secret:walk')),
    ].join('\\n') })
  },
})
`)
    await loaded
    const refused = (what: string) => `EACCES EACCES: ${what}: object 'secret' is not in this plugin's objects; add it to objects: [...]`
    assert.deepEqual((harness.sink.signals('spy').logs[0]!.body as string).split('\n'), [
      refused("ctx.map('secret:counts')"),
      refused("ctx.map('secret:counts')"),
      refused("ctx.attach('secret:probe')"),
      refused("ctx.iterate('secret:walk')"),
    ])
    assert.deepEqual(provider.uses, [], 'nothing reached the object')
    assert.deepEqual([...provider.object('secret').counts.values()].map((v) => [...v]), [[3, 3, 3, 3, 3, 3, 3, 3]], 'the entry was neither claimed nor drained')
    assert.deepEqual(harness.runtime.bus.claims.list(), [])
  })

  it('a plugin\'s uprobe holds and claims end with its version, whatever its isolate says', async () => {
    const provider = new RecordingProvider(['gen'])
    h = await startHarness({ provider })
    const harness = h
    const loaded = harness.nextEvent('loaded', 'holder')
    harness.write('holder.ts', `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'holder',
  objects: ['gen'],
  async setup(ctx) {
    await ctx.attach({ program: 'gen:probe', uprobe: { binary: '/bin/true', symbol: 'main' } })
    await ctx.map('gen:counts').claim(new Uint8Array(4), new Uint8Array(8).fill(1))
    // a plugin that breaks everything it can before it goes
    Object.prototype.toString = () => { throw new Error('no') }
    Array.prototype.push = () => { throw new Error('no') }
  },
})
`)
    await loaded
    assert.deepEqual(provider.uses, ['attach gen:probe'])
    assert.equal(harness.runtime.bus.claims.list().length, 1)
    const unloaded = harness.nextEvent('unloaded', 'holder')
    harness.remove('holder.ts')
    await unloaded
    assert.deepEqual(provider.uses, ['attach gen:probe', 'detach gen:probe'])
    assert.deepEqual(harness.runtime.bus.claims.list(), [])
    assert.deepEqual(harness.runtime.bus.uprobes.list(), [])
  })
})
