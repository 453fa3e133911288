/**
 * Plugin code runs in the same context as the isolate's bootstrap, so it can patch every builtin
 * the bootstrap's own checks use. These plugins do exactly that; the host must still keep each one
 * to its declared objects and refuse whatever malformed results the patched bootstrap sends back.
 */
import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import type { HostEvent } from '../../runtime/plugins/host.ts'
import type { PluginFailure } from '../../runtime/plugins/sandbox.ts'
import { type Harness, startHarness } from '../plugin-harness.ts'
import { SyntheticProvider } from '../plugin-fixtures/synthetic.ts'

type Rejected = Extract<HostEvent, { type: 'rejected' }>
type Failed = Extract<HostEvent, { type: 'failed' }>

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

/** Holds object `secret` open and counts its events, so a spy has something to steal. */
const holder = `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'holder',
  objects: ['secret'],
  setup(ctx) {
    let n = 0
    ctx.on('secret:events', () => { n++ })
    ctx.every('10ms', () => { ctx.emit.metric({ name: 'seen', kind: 'gauge', value: n }) })
  },
})
`

function plugin(name: string, objects: string[], setup: string): string {
  return `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: '${name}',
  objects: ${JSON.stringify(objects)},
  async setup(ctx) {
    ${setup}
  },
})
`
}

async function startWithHolder(): Promise<{ harness: Harness; provider: SyntheticProvider }> {
  const provider = new SyntheticProvider(['gen', 'secret'])
  const harness = await startHarness({ provider, plugins: { 'holder.ts': holder } })
  return { harness, provider }
}

const lastSeen = (harness: Harness) => harness.sink.signals('holder').metrics.findLast((m) => m.name === 'seen')?.value

describe('permissions are checked on the host', () => {
  it('a plugin that patches Set.prototype.has and Array.prototype.includes cannot subscribe to another object\'s stream', async () => {
    const { harness, provider } = await startWithHolder()
    h = harness
    const rejected = h.nextEvent('rejected', 'spy') as Promise<Rejected>
    h.write('spy.ts', plugin('spy', [], `
    // whatever the isolate's own check uses, the host checks again
    Set.prototype.has = () => true
    Array.prototype.includes = () => true
    ctx.on('secret:events', (ev) => { ctx.emit.log({ body: 'stolen ' + ev.seq }) })`))
    const event = await rejected
    const failure = event.error as PluginFailure
    assert.equal(failure.kind, 'permission')
    assert.equal(failure.message, `plugin spy: ctx.on('secret:events'): object 'secret' is not in this plugin's objects; add it to objects: [...]`)
    const spy = h.runtime.manager.list().find((p) => p.name === 'spy')!
    assert.equal(spy.status, 'failed')
    assert.deepEqual(spy.topics, [])
    provider.object('secret').push('events', 100)
    await h.waitFor(() => lastSeen(h!) === 100, 'holder to see the 100 events')
    assert.equal(h.sink.signals('spy').logs.length, 0, 'the spy received nothing')
    assert.deepEqual(h.runtime.bus.listStreams().map((s) => [s.topic, s.listeners]), [['secret:events', 1]])
  })

  it('a first load cannot touch a map outside its objects during setup, whatever it patches', async () => {
    const { harness, provider } = await startWithHolder()
    h = harness
    const rejected = h.nextEvent('rejected', 'writer') as Promise<Rejected>
    h.write('writer.ts', plugin('writer', ['gen'], `
    String.prototype.split = function () { return ['gen'] } as never
    const m = ctx.map('secret:counts')
    await m.update(new Uint8Array(4), new Uint8Array(8).fill(9))`))
    const event = await rejected
    assert.match(event.error.message, /ctx\.map\('secret:counts'\): object 'secret' is not in this plugin's objects; add it to objects: \[\.\.\.\]/)
    assert.equal(provider.object('secret').counts.size, 0, 'nothing was written to the other object\'s map')
  })

  it('a reload is checked against its own objects, not the running version\'s', async () => {
    const { harness, provider } = await startWithHolder()
    h = harness
    const loaded = h.nextEvent('loaded', 'writer')
    h.write('writer.ts', plugin('writer', ['gen', 'secret'], `ctx.every('10ms', () => {})`))
    await loaded
    const rejected = h.nextEvent('rejected', 'writer') as Promise<Rejected>
    h.write('writer.ts', plugin('writer', ['gen'], `
    String.prototype.split = function () { return ['gen'] } as never
    await ctx.map('secret:counts').update(new Uint8Array(4), new Uint8Array(8).fill(9))`))
    const event = await rejected
    assert.match(event.error.message, /ctx\.map\('secret:counts'\): object 'secret' is not in this plugin's objects/)
    assert.equal(provider.object('secret').counts.size, 0)
    const writer = h.runtime.manager.list().find((p) => p.name === 'writer')!
    assert.equal(writer.status, 'running', 'the previous version keeps running')
    assert.deepEqual(writer.objects.sort(), ['gen', 'secret'])
  })

  it('refuses ctx.every intervals under 10 ms that a patched bootstrap reports', async () => {
    h = await startHarness({ provider: new SyntheticProvider() })
    const rejected = h.nextEvent('rejected', 'spinner') as Promise<Rejected>
    h.write('spinner.ts', plugin('spinner', ['gen'], `
    ctx.every('1s', () => {})
    Array.prototype.map = function () { return [0] } as never`))
    const event = await rejected
    assert.equal((event.error as PluginFailure).kind, 'permission')
    assert.match(event.error.message, /setup\(\) reported a ctx\.every interval of 0 \(at least 10 ms\); the version was not started/)
  })

  it('counts a flood past the limit even when Array.prototype.push is patched', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({ provider, backoffMs: 60_000 })
    const failed = h.nextEvent('failed', 'flooder', 10_000) as Promise<Failed>
    h.write('flooder.ts', plugin('flooder', ['gen'], `
    ctx.on('gen:events', () => {
      const push = Array.prototype.push
      Array.prototype.push = function (item: unknown) { for (let i = 0; i < 150000; i++) this[this.length] = item; return this.length }
      ctx.emit.metric({ name: 'flood', kind: 'counter', value: 1 })
      Array.prototype.push = push
    })`))
    await h.waitFor(() => h!.runtime.manager.list().some((p) => p.name === 'flooder' && p.status === 'running'), 'flooder to load')
    provider.gen.push('events', 1)
    const event = await failed
    assert.equal(event.failure.kind, 'emit-flood')
    assert.equal(event.failure.message, 'plugin flooder: emitted 150000 signals and log lines in one call, more than 100000; ' +
      'aggregate before emitting (for example count into a Map and emit from ctx.every)')
    assert.equal(h.sink.signals('flooder').metrics.length, 0, 'nothing of the flood was exported')
  })

  it('leaks no host reference through patched Function.prototype, Reflect or Object.prototype getters', async () => {
    h = await startHarness({ provider: new SyntheticProvider() })
    const loaded = h.nextEvent('loaded', 'snoop')
    h.write('snoop.ts', plugin('snoop', ['gen'], `
    const seen: unknown[] = []
    const keep = (x: unknown) => { if (x !== null && (typeof x === 'object' || typeof x === 'function')) seen.push(x) }
    const reflectApply = Reflect.apply
    for (const name of ['call', 'apply', 'bind'] as const) {
      const original = Function.prototype[name]
      ;(Function.prototype as any)[name] = function (this: unknown, ...args: unknown[]) { keep(this); args.forEach(keep); return reflectApply(original as any, this, args) }
    }
    ;(Reflect as any).apply = (f: any, self: unknown, args: unknown[]) => { keep(f); keep(self); return reflectApply(f, self, args) }
    for (const key of ['timeout', 'release', 'transferIn', 'reference', 'promise', 'copy', 'externalCopy', 'arguments', 'result', 'then']) {
      Object.defineProperty(Object.prototype, key, { configurable: true, get() { keep(this); return undefined } })
    }
    const m = ctx.map('gen:counts')
    await m.update(new Uint8Array(4), new Uint8Array(8))
    await m.lookup(new Uint8Array(4))
    await m.entries()
    ctx.log.info('probe')
    for (const key of ['timeout', 'release', 'transferIn', 'reference', 'promise', 'copy', 'externalCopy', 'arguments', 'result', 'then']) {
      delete (Object.prototype as any)[key]
    }
    const leaked = seen.filter((x: any) => ['applySync', 'apply', 'derefInto', 'copyInto', 'deref'].some((k) => {
      try { return typeof x[k] === 'function' && x !== Function.prototype && !(x instanceof Function) } catch { return false }
    }) || /Reference|ExternalCopy|Isolate/.test(Object.prototype.toString.call(x)))
    ctx.emit.log({ body: 'seen ' + seen.length + ', leaked ' + leaked.length })`))
    await loaded
    const body = h.sink.signals('snoop').logs[0]!.body as string
    assert.match(body, /^seen [1-9]\d*, leaked 0$/, `the patches ran and caught nothing of the host (${body})`)
  })

  it('refuses a definition whose name or objects a patched bootstrap mangles', async () => {
    h = await startHarness({ provider: new SyntheticProvider() })
    const rejected = h.nextEvent('rejected') as Promise<Rejected>
    h.write('mangled.ts', `import { definePlugin } from 'periscope/plugin'
const p = definePlugin({ name: 'mangled', setup() {} })
Object.defineProperty(p, 'objects', { get: () => ['exec', 42] })
export default p
`)
    const event = await rejected
    assert.match(event.error.message, /the plugin's definition lists objects \["exec",42\]; give library object names like \['exec'\]/)
  })
})
