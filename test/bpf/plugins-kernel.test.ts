import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { afterEach, test } from 'node:test'
import type { ObjectProvider } from '../../runtime/bus.ts'
import { testRun } from '../../runtime/bpf/links.ts'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { lastCount } from '../plugin-fixtures/sources.ts'
import { root } from './kernel.ts'

const decodersPath = join(root, 'bpf/lib/index.types.ts')

/** The real library, remembering what it opened so the test can drive loopgen and see links. */
function realProvider(): ObjectProvider & { opened: Map<string, LibraryObject> } {
  const opened = new Map<string, LibraryObject>()
  return {
    opened,
    async open(name, settings) {
      const object = await openLibraryObject(name, { settings, log: () => {} })
      opened.set(name, object)
      return object
    },
  }
}

const generate = (object: LibraryObject, count: number): void => {
  const args = new Uint8Array(8)
  new DataView(args.buffer).setUint32(0, count, true)
  testRun(object.object, 'generate', args)
}

const periscopeProgramIds = (): number[] =>
  (JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'list']).toString()) as { id: number; name?: string }[])
    .filter((p) => p.name === 'handle_exec' || p.name === 'handle_exit').map((p) => p.id)

/** Counts loopgen records and checks their numbering; exec events are kept by argv[1]. */
function plugin(version: number): string {
  return `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'kernel-counter',
  objects: ['exec', 'loopgen'],
  setup(ctx) {
    const s = ctx.state as { count?: number; next?: number; gaps?: number }
    s.count ??= 0
    s.gaps ??= 0
    ctx.on('loopgen:events', (ev) => {
      if (s.next !== undefined && ev.seq !== s.next) s.gaps! += 1
      s.next = ev.seq + 1
      s.count! += 1
    })
    ctx.on('exec:events', (ev) => {
      if (ev.kind === 1 && ev.args[1] === 'periscope-plugin-test') ctx.emit.log({ body: ev.args.join(' '), attributes: { pid: ev.pid, version: ${version} } })
    })
    ctx.every('20ms', () => {
      ctx.emit.metric({ name: 'count', kind: 'gauge', value: s.count!, attributes: { version: ${version}, gaps: s.gaps! } })
    })
  },
})
`
}

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

test('a plugin receives real exec events; editing it keeps the kernel links and loses no record', async () => {
  const provider = realProvider()
  h = await startHarness({ provider, decodersPath, plugins: { 'kernel-counter.ts': plugin(1) } })
  const harness = h
  await harness.waitFor(() => provider.opened.has('exec') && provider.opened.has('loopgen'), 'the objects to open')
  const exec = provider.opened.get('exec')!
  const loopgen = provider.opened.get('loopgen')!

  const child = spawnSync('/bin/echo', ['periscope-plugin-test', 'v1'])
  await harness.waitFor(() => harness.sink.signals('kernel-counter').logs.some((l) => l.body === '/bin/echo periscope-plugin-test v1'), 'the exec event in the plugin')
  const log = harness.sink.signals('kernel-counter').logs.find((l) => l.body === '/bin/echo periscope-plugin-test v1')!
  assert.equal(log.attributes?.pid, child.pid)

  const linksBefore = exec.links().map((l) => l.id)
  assert.equal(linksBefore.length, 3, 'exec, exit and fork')
  let generated = 0
  const pump = setInterval(() => { generate(loopgen, 500); generated += 500 }, 2)
  try {
    await harness.waitFor(() => generated >= 20_000, 'records before the edit')
    const loaded = harness.nextEvent('loaded', 'kernel-counter')
    harness.write('kernel-counter.ts', plugin(2))
    await loaded
    const at = generated
    await harness.waitFor(() => generated >= at + 20_000, 'records after the edit')
  } finally {
    clearInterval(pump)
  }
  await harness.waitFor(() => lastCount(harness.sink.signals('kernel-counter').metrics)?.value === generated, `the count to reach ${generated}`, 10_000)
  const last = lastCount(harness.sink.signals('kernel-counter').metrics)!
  assert.equal(last.attributes!.version, 2)
  assert.equal(last.attributes!.gaps, 0)
  assert.deepEqual(exec.links().map((l) => l.id), linksBefore, 'the same kernel links before and after the swap')
  assert.equal(loopgen.stats().dropped, 0)

  spawnSync('/bin/echo', ['periscope-plugin-test', 'v2'])
  await harness.waitFor(() => harness.sink.signals('kernel-counter').logs.some((l) => l.body === '/bin/echo periscope-plugin-test v2' && l.attributes?.version === 2), 'an exec event handled by the new version')
})

test('deleting the plugin unloads it and closes its objects; nothing stays in the kernel', async () => {
  const provider = realProvider()
  const before = periscopeProgramIds()
  h = await startHarness({ provider, decodersPath, plugins: { 'kernel-counter.ts': plugin(1) } })
  const harness = h
  await harness.waitFor(() => provider.opened.has('exec'), 'the exec object to open')
  const ids = periscopeProgramIds().filter((id) => !before.includes(id))
  assert.equal(ids.length, 2, 'handle_exec and handle_exit are loaded')
  const unloaded = harness.nextEvent('unloaded', 'kernel-counter')
  harness.remove('kernel-counter.ts')
  await unloaded
  await harness.waitFor(() => provider.opened.get('exec')!.object.closed, 'the exec object to close')
  const left = periscopeProgramIds()
  assert.deepEqual(ids.filter((id) => left.includes(id)), [], 'no program of the unloaded plugin is left')
})
