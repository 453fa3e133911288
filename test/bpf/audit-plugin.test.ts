/**
 * The shipped audit plugin (plugins/audit.ts) in the plugin runtime over the real audit object,
 * hot-reloaded with other rules: the new rules hold from the reload on (an exec the old rules kept
 * is dropped in the kernel, one they dropped is kept), the object's received count grows only by
 * what is kept, and the object's links are the same before and after (no program detached).
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { openLibraryObject } from '../../runtime/library/index.ts'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { root } from './kernel.ts'

// the harness writes the plugin into a directory of its own: its helpers are imported from plugins/audit
const shipped = readFileSync(join(root, 'plugins/audit.ts'), 'utf8').replaceAll("from './audit/", `from '${join(root, 'plugins/audit')}/`)
const rulesDefault = 'rules: [] as { [key: string]: string | number | string[] | number[] }[],'
assert.ok(shipped.includes(rulesDefault), 'plugins/audit.ts declares its rules default as this test expects')
/** The plugin with `rules` defaulting to: keep only the execs of `comm`. */
const withRules = (comm: string): string => shipped.replace(rulesDefault, `rules: [{ action: 'include', events: ['execve'], comm: '${comm}' }, { events: ['unlink', 'rename', 'chmod', 'chown', 'open', 'setuid', 'connect', 'accept', 'ptrace', 'bpf'] }] as { [key: string]: string | number | string[] | number[] }[],`)

let h: Harness | undefined
const dir = mkdtempSync(join(tmpdir(), 'periscope-audit-plugin-'))
after(async () => {
  await h?.close()
  rmSync(dir, { recursive: true, force: true })
})

test('a hot reload swaps the rules in the kernel without detaching a program', async () => {
  const one = join(dir, 'pswl-aud-one')
  const two = join(dir, 'pswl-aud-two')
  copyFileSync('/bin/true', one)
  copyFileSync('/bin/true', two)
  execFileSync('chmod', ['755', one, two])
  h = await startHarness({
    provider: { open: (name, settings) => openLibraryObject(name, { settings, log: () => {} }) },
    decodersPath: join(root, 'bpf/lib/index.types.ts'),
    plugins: { 'audit.ts': withRules('pswl-aud-one') },
  })
  const harness = h
  await harness.waitFor(() => harness.log.lines.some((line) => line.message.includes('auditing')), 'the audit plugin to start', 30_000)
  const object = () => harness.runtime.bus.listObjects().find((o) => o.name === 'audit')!
  const linksBefore = object().links.map((l) => l.id).sort()
  assert.equal(linksBefore.length, 30)
  const execsOf = (path: string) => harness.sink.signals('audit').logs.filter((l) => l.eventName === 'audit.process.exec' && l.attributes?.['process.executable.path'] === path)

  execFileSync(one, ['first'])
  execFileSync(two, ['first'])
  await harness.waitFor(() => execsOf(one).length === 1, 'the exec of pswl-aud-one', 30_000)
  const receivedBefore = object().stats.received

  const loaded = harness.nextEvent('loaded', 'audit', 30_000)
  harness.write('audit.ts', withRules('pswl-aud-two'))
  await loaded
  execFileSync(one, ['second'])
  execFileSync(two, ['second'])
  await harness.waitFor(() => execsOf(two).length === 1, 'the exec of pswl-aud-two', 30_000)

  assert.deepEqual(execsOf(one).map((l) => l.attributes?.['process.command_args']), [[one, 'first']])
  assert.deepEqual(execsOf(two).map((l) => l.attributes?.['process.command_args']), [[two, 'second']])
  // the only record after the reload is the kept exec: the others never left the kernel
  assert.equal(object().stats.received, receivedBefore + 1)
  assert.deepEqual(object().links.map((l) => l.id).sort(), linksBefore)
})
