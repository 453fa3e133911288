/**
 * Hostile plugins trying to reach the host. Each attempt runs in setup() and reports what it got
 * as a log record; none may see anything but the plugin API.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { type Harness, startHarness } from '../plugin-harness.ts'
import { SyntheticProvider } from '../plugin-fixtures/synthetic.ts'

let h: Harness
let n = 0

/** Loads a plugin whose setup evaluates `expression` (it may await) and returns what it reported. */
async function attempt(expression: string): Promise<string> {
  const name = `escape${++n}`
  const loaded = h.nextEvent('loaded', name)
  h.write(`${name}.ts`, `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: '${name}',
  objects: ['gen'],
  async setup(ctx) {
    let result: unknown
    try { result = await (async () => ${expression})() } catch (e) { result = 'threw ' + (e as Error).name + ': ' + (e as Error).message }
    ctx.emit.log({ body: String(result) })
  },
})
`)
  await loaded
  const logs = h.sink.signals(name).logs
  assert.equal(logs.length, 1, `plugin ${name} reported once`)
  return logs[0]!.body as string
}

describe('sandbox escape attempts', () => {
  before(async () => { h = await startHarness({ provider: new SyntheticProvider() }) })
  after(async () => { await h.close() })

  it('has no require', async () => {
    assert.equal(await attempt(`typeof (globalThis as any).require`), 'undefined')
    // A literal require('fs') fails the build (see the built-ins test); a computed one reaches
    // esbuild's shim, which only throws.
    assert.match(await attempt(`require(['f', 's'].join(''))`), /^threw Error: Dynamic require of "fs" is not supported/)
  })

  it('has no process, Buffer or module globals', async () => {
    assert.equal(await attempt(`[typeof process, typeof Buffer, typeof module, typeof global, typeof setImmediate].join()`),
      'undefined,undefined,undefined,undefined,undefined')
  })

  it('cannot reach process through the Function constructor', async () => {
    assert.equal(await attempt(`Function('return typeof process')()`), 'undefined')
    assert.equal(await attempt(`ctx.log.info.constructor('return typeof process + typeof require')()`), 'undefinedundefined')
    assert.equal(await attempt(`ctx.map.constructor.constructor('return this === globalThis')()`), 'true')
  })

  it('cannot eval its way to the host', async () => {
    assert.equal(await attempt(`eval('typeof process')`), 'undefined')
    assert.equal(await attempt(`(0, eval)('this.process === undefined && this.require === undefined')`), 'true')
  })

  it('has no network', async () => {
    assert.equal(await attempt(`[typeof fetch, typeof XMLHttpRequest, typeof WebSocket, typeof Request].join()`),
      'undefined,undefined,undefined,undefined')
  })

  it('cannot import node built-ins at build time', async () => {
    const rejected = h.nextEvent('rejected')
    h.write('fsimport.ts', `import { readFileSync } from 'node:fs'
import { definePlugin } from 'periscope/plugin'
export default definePlugin({ name: 'fsimport', setup() { readFileSync('/etc/passwd') } })
`)
    const event = await rejected
    assert.equal(event.type, 'rejected')
    assert.match((event as { error: Error }).error.message, /fsimport\.ts:1:\d+: Could not resolve "node:fs"/)
    assert.equal(h.runtime.manager.list().find((p) => p.file.endsWith('fsimport.ts'))!.status, 'failed')
  })

  it('cannot import modules at run time', async () => {
    assert.match(await attempt(`import(['node', 'fs'].join(':')).then(() => 'imported')`), /^threw /)
  })

  it('sees no isolated-vm reference anywhere on globalThis', async () => {
    const names = await attempt(`Object.getOwnPropertyNames(globalThis).filter((k) => {
      const v = (globalThis as any)[k]
      return /^(ivm|isolated|Reference$|ExternalCopy|Isolate$|Context$)|\\$[0-9]/.test(k) || (v && typeof v === 'object' && typeof v.applySync === 'function')
    }).join() || 'none'`)
    assert.equal(names, 'none')
    assert.equal(await attempt(`Object.keys((globalThis as any).__periscope).join()`), 'install')
    assert.equal(await attempt(`typeof $0 + typeof $1`), 'undefinedundefined')
  })

  it('cannot replace the runtime hook or install a second plugin', async () => {
    assert.match(await attempt(`(globalThis as any).__periscope.install({ name: 'x', setup() {} }, {})`), /^threw Error: __periscope.install is called once/)
    assert.equal(await attempt(`(() => { try { (globalThis as any).__periscope = 1 } catch {} return typeof (globalThis as any).__periscope })()`), 'object')
  })

  it('gets only copies from host callbacks, never host objects', async () => {
    const got = await attempt(`(async () => {
      const m = ctx.map('gen:counts')
      const key = new Uint8Array(4)
      await m.update(key, new Uint8Array(8).fill(7))
      const v = await m.lookup(key)
      return [v instanceof Uint8Array, Object.getPrototypeOf(v) === Uint8Array.prototype, v!.join('')].join()
    })()`)
    assert.equal(got, 'true,true,77777777')
  })

  it('learns nothing of the host from the errors of host callbacks', async () => {
    // The host's own error (a map the object lacks) reaches the isolate as a message only: no
    // host stack frames, no host file paths.
    const hostError = await attempt(`(() => {
      let sites = 0
      ;(Error as any).prepareStackTrace = (_e: unknown, s: unknown[]) => { sites += s.length; return 'patched' }
      try { ctx.map('gen:nosuchmap'); return 'no error' } catch (e) {
        const stack = String((e as Error).stack)
        delete (Error as any).prepareStackTrace
        return [(e as Error).message, sites, /host\\.ts|node:internal|node_modules|\\/runtime\\//.test(stack) ? 'host paths' : 'no host paths'].join(' | ')
      }
    })()`)
    assert.equal(hostError, "object gen has no map 'nosuchmap' | 0 | no host paths")
    // The isolate's own checks throw in isolate code; a patched prepareStackTrace sees those call
    // sites, and none of their receivers or functions is an isolated-vm reference.
    const frames = await attempt(`(() => {
      const found: string[] = []
      let frames = 0
      ;(Error as any).prepareStackTrace = (_e: unknown, sites: any[]) => {
        for (const site of sites) {
          frames++
          for (const get of ['getThis', 'getFunction']) {
            let value: any
            try { value = site[get]() } catch { continue }
            if (value !== undefined && value !== null && (typeof value.applySync === 'function' || typeof value.derefInto === 'function')) found.push(get)
          }
        }
        return ''
      }
      try { ctx.map('nosuchobject:counts') } catch (e) { void (e as Error).stack }
      delete (Error as any).prepareStackTrace
      return frames > 0 ? (found.join() || 'contained') : 'no frames seen'
    })()`)
    assert.equal(frames, 'contained')
  })


})
