/**
 * The esbuild service behind every plugin build can be stopped at any moment: `periscope run`
 * stops the one it started as root at the privilege drop (test/bpf/privileges.test.ts checks the
 * credentials of the next one). The stop resolves once the old process is gone, a build caught by
 * it finishes in the next service, and each builder's context moves there.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, test } from 'node:test'
import { bootstrapScript, PluginBuilder, stopBuildService } from '../../runtime/plugins/build.ts'

const decodersPath = path.resolve(import.meta.dirname, '../plugin-fixtures/decoders.ts')
const dir = mkdtempSync(path.join(tmpdir(), 'periscope-build-service-'))
const file = path.join(dir, 'service.ts')
after(async () => {
  await stopBuildService()
  rmSync(dir, { recursive: true, force: true })
})

function writePlugin(marker: string): void {
  writeFileSync(file, `import { definePlugin } from 'periscope/plugin'
export default definePlugin({ name: 'service', objects: ['gen'], setup(ctx) { ctx.log.info('${marker}') } })
`)
}

/** This process's esbuild children, zombies included, by pid. */
function esbuildChildren(): string[] {
  const children = readdirSync('/proc/self/task')
    .flatMap((tid) => readFileSync(`/proc/self/task/${tid}/children`, 'utf8').trim().split(/\s+/))
    .filter((pid) => pid !== '')
  return children.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'esbuild'
    } catch {
      return false // reaped between listing and reading
    }
  })
}

test('a build and the first bootstrap build caught by a stop finish in the next service', async () => {
  writePlugin('caught')
  const builder = new PluginBuilder(file, decodersPath)
  // both requests are on their way to the service when it stops
  const bundle = builder.build()
  const bootstrap = bootstrapScript()
  const [first] = esbuildChildren()
  assert.notEqual(first, undefined, 'the first build started the service')
  await stopBuildService()
  assert.match((await bundle).code, /caught/)
  assert.match(await bootstrap, /var bootstrap = /)
  const services = esbuildChildren()
  assert.equal(services.length, 1, `one service: ${services.join(' ')}`)
  assert.notEqual(services[0], first, 'the builds ran in a new service')
  await builder.dispose()
})

test('a stop ends the service before it resolves; the next build starts a new one and rebuilds every builder there', async () => {
  writePlugin('before the stop')
  const builder = new PluginBuilder(file, decodersPath)
  assert.match((await builder.build()).code, /before the stop/)
  const [old] = esbuildChildren()
  assert.notEqual(old, undefined)

  await stopBuildService()
  assert.deepEqual(esbuildChildren(), [], 'the old service has exited and been reaped')

  writePlugin('after the stop')
  const bundle = await builder.build()
  assert.match(bundle.code, /after the stop/)
  assert.deepEqual(bundle.inputs.filter((input) => input === file), [file])
  const services = esbuildChildren()
  assert.equal(services.length, 1)
  assert.notEqual(services[0], old)

  // a context that went with a stopped service needs no disposing, and disposing it does not hang
  await stopBuildService()
  await builder.dispose()
  assert.deepEqual(esbuildChildren(), [])
})
