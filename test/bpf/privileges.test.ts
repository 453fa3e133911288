/**
 * After loading, the runtime continues as nobody, with no_new_privs and only the capabilities it
 * keeps, on every thread: it can no longer write root's files, and it still loads, attaches and
 * reads objects, serves its admin socket and writes its data.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { test } from 'node:test'
import { connectAdmin } from '../../runtime/admin/client.ts'
import { root, waitFor } from './kernel.ts'
import { withoutShippedPlugins } from '../peers/periscope.ts'

// CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_DAC_READ_SEARCH
const kept = (1n << 39n) | (1n << 38n) | (1n << 12n) | (1n << 2n)
const hex = (mask: bigint) => mask.toString(16).padStart(16, '0')
const nobody = ['65534', '65534', '65534', '65534']
/** These tests are about the runtime's privileges, not the shipped plugins: only their own plugins run. */
const noShippedPlugins = `plugins: ${JSON.stringify(withoutShippedPlugins())}\n`

/** Credentials of every thread of `pid`, as the kernel accounts them. */
function threadCredentials(pid: number) {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    let text: string
    try {
      text = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8')
    } catch {
      return [] // the thread exited between listing and reading
    }
    const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? ''
    return [{
      tid, name: field('Name'), uids: field('Uid').split(/\s+/), gids: field('Gid').split(/\s+/), groups: field('Groups'),
      noNewPrivs: field('NoNewPrivs'), caps: ['CapEff', 'CapPrm', 'CapBnd', 'CapInh', 'CapAmb'].map((c) => `${c} ${field(c)}`).join(' '),
    }]
  })
}
const expectedCaps = `CapEff ${hex(kept)} CapPrm ${hex(kept)} CapBnd ${hex(kept)} CapInh ${hex(0n)} CapAmb ${hex(0n)}`

/** A temp dir holding a root-owned 0644 file and a root-only 0600 file, as the attacker's targets. */
function targets() {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-privileges-'))
  const rootFile = join(dir, 'root-file')
  writeFileSync(rootFile, 'root\'s\n', { mode: 0o644 })
  chmodSync(rootFile, 0o644)
  const rootOnly = join(dir, 'root-only')
  writeFileSync(rootOnly, 'secret\n', { mode: 0o600 })
  return { dir, rootFile, rootOnly }
}

function runDroppedChild(...args: string[]) {
  const { dir, rootFile, rootOnly } = targets()
  try {
    const output = execFileSync(process.execPath, [join(root, 'test/bpf/fixtures/dropped-privileges.ts'), join(dir, 'data'), rootFile, rootOnly, ...args], { encoding: 'utf8' })
    return { result: JSON.parse(output), rootFileAfter: readFileSync(rootFile, 'utf8'), rootFileMode: statSync(rootFile).mode & 0o777, data: statSync(join(dir, 'data')) }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

test('after the drop no thread can write or chmod a root-owned 0644 file, and the runtime still loads, attaches, reads and writes its data', () => {
  const { result, rootFileAfter, rootFileMode, data } = runDroppedChild()
  assert.equal(result.report.dropped, true, result.report.message)
  assert.deepEqual(result.status, {
    Uid: nobody.join('\t'), Gid: nobody.join('\t'), Groups: '', NoNewPrivs: '1',
    CapInh: hex(0n), CapPrm: hex(kept), CapEff: hex(kept), CapBnd: hex(kept), CapAmb: hex(0n),
  })
  // uid 0 owns root's files: without the switch to nobody these would all have succeeded
  assert.deepEqual(result.writeRootFile, { mainThread: 'EACCES', threadPool: 'EACCES', workerThread: 'EACCES', chmod: 'EPERM' })
  assert.equal(rootFileAfter, 'root\'s\n')
  assert.equal(rootFileMode, 0o644)
  // CAP_DAC_READ_SEARCH is kept on purpose (tracefs, plugin files, uprobe targets)
  assert.equal(result.readRootOnlyFile, 'ok')
  assert.equal(result.writeDataDir, 'ok')
  assert.deepEqual([data.uid, data.gid], [65534, 65534], 'the data directory was handed to nobody before the drop')
  assert.equal(result.spawnedUid, '65534', 'children start as nobody too')
  // a child keeps a capability only when started to keep it, and only one the runtime holds
  const none = [`CapEff:\t${hex(0n)}`, `CapAmb:\t${hex(0n)}`]
  const dacReadSearch = hex(1n << 2n)
  assert.deepEqual(result.childCapabilities, {
    plain: none,
    keepingDacReadSearch: [`CapEff:\t${dacReadSearch}`, `CapAmb:\t${dacReadSearch}`],
    keepingSysAdmin: 'Error: cannot start a child process that keeps CAP_SYS_ADMIN: setAmbientCapabilities: capset (inheritable): Operation not permitted. ' +
      'A child can keep only capabilities the runtime holds (CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF), ' +
      'and none while the SECBIT_NO_CAP_AMBIENT_RAISE securebit is set; start Periscope without that securebit',
    afterwards: none,
  })
  assert.equal(result.execEventAfterDrop, true, 'exec loaded, attached and delivered an event after the drop')
  assert.deepEqual(result.probes.tracepoint, { status: 'supported' })
})

test('after the drop an EPERM is an error naming the missing capability, never a cached "unsupported"', () => {
  const { result } = runDroppedChild()
  // probing tc needs a network namespace of its own, so CAP_SYS_ADMIN, which is gone
  const tcFailed = {
    status: 'failed',
    reason: 'cannot tell whether tc attach works: probing it needs CAP_SYS_ADMIN, and Periscope dropped it after start-up and keeps only ' +
      'CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF (withFreshNetworkNamespace: unshare(CLONE_NEWNET): Operation not permitted)',
  }
  assert.deepEqual(result.probes.tcFirst, tcFailed)
  assert.deepEqual(result.probes.tcAgain, tcFailed, 'the failure was not cached: the second call probed again')
  assert.equal(result.probes.cgroupSkb.status, 'failed')
  assert.equal(result.fentryLoad, 'loading probe_fentry was refused (EPERM) although this process holds CAP_BPF and CAP_PERFMON: ' +
    'the kernel refuses it by policy (lockdown, an LSM), or one of its helpers wants CAP_SYS_ADMIN, which Periscope dropped after start-up')
})

test('the object library settles every attach probe before the drop, so later answers do not depend on what the process still holds', () => {
  const { result } = runDroppedChild('--settle')
  assert.equal(result.report.dropped, true)
  assert.deepEqual(result.probes.tcFirst, { status: 'supported' })
  assert.deepEqual(result.probes.cgroupSkb, { status: 'supported' })
})

/**
 * Starts `periscope run` on `dir`; resolves its exit code, collects its output. With `repoUnder`,
 * a directory only root can read, the runtime runs from the repository bind-mounted at
 * `<repoUnder>/repo` in a mount namespace of its own, so that none of its files is readable by nobody.
 */
function startRun(dir: string, { repoUnder }: { repoUnder?: string } = {}) {
  const args = ['run', '--plugins', dir, '--config', join(dir, 'periscope.yaml')]
  const options = { cwd: dir, env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: '' } }
  const repo = repoUnder === undefined ? undefined : join(repoUnder, 'repo')
  // unshare and sh exec, so the runtime keeps the child's pid
  const child = repo === undefined
    ? spawn(process.execPath, [join(root, 'runtime/cli.ts'), ...args], options)
    : spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" "$2" && shift 2 && exec "$@"', 'sh',
      root, repo, join(repo, relative(root, process.execPath)), join(repo, 'runtime/cli.ts'), ...args], options)
  let output = ''
  child.stdout.on('data', (d) => { output += d })
  child.stderr.on('data', (d) => { output += d })
  const exited = new Promise<number | null>((resolve) => {
    child.on('close', (code) => resolve(code))
    child.on('error', (error) => { output += `${error}\n`; resolve(null) })
  })
  return { child, exited, output: () => output }
}

/** Stops a run that a failed assertion left running, before its directory is removed. */
async function stopRuns(...runs: (ReturnType<typeof startRun> | undefined)[]): Promise<void> {
  for (const run of runs) {
    run?.child.kill('SIGTERM')
    await run?.exited
  }
}

test('periscope run continues as nobody on every thread, and still works: events, a hot-added object, the admin socket, its data', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-run-privileges-'))
  const socket = join(dir, 'admin.sock')
  const dataDir = join(dir, 'data')
  writeFileSync(join(dir, 'execs.ts'), `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'privileges-execs',
  objects: ['exec'],
  setup(ctx) {
    ctx.on('exec:events', (ev) => {
      if (ev.kind !== 1 || ev.args[1] !== 'privileges-test') return
      ctx.log.info('saw exec ' + ev.args[2])
      ctx.emit.log({ body: 'exec ' + ev.args[2] })
    })
  },
})
`)
  writeFileSync(join(dir, 'periscope.yaml'), `admin:\n  socket: ${socket}\nexporter:\n  dataDir: ${dataDir}\n  prometheus:\n    enabled: false\n${noShippedPlugins}`)
  const run = startRun(dir)
  let again: ReturnType<typeof startRun> | undefined
  try {
    await waitFor(() => /running 1 of \d+ plugins/.test(run.output()), 'the runtime to start', 20_000)
    assert.match(run.output(), /dropped .*CAP_SYS_ADMIN.*; continuing as nobody \(uid 65534\) with no_new_privs, keeping CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_PERFMON, CAP_BPF/, run.output())

    const threads = threadCredentials(run.child.pid!)
    for (const thread of threads) t.diagnostic(`${thread.tid} ${thread.name}: uids ${thread.uids.join(' ')} ${thread.caps} NoNewPrivs ${thread.noNewPrivs}`)
    assert.ok(threads.length > 4, `the runtime has its V8, libuv and isolate threads (${threads.length} found)`)
    const wrong = (list: typeof threads) => list
      .filter((th) => th.uids.join() !== nobody.join() || th.gids.join() !== nobody.join() || th.groups !== '' || th.noNewPrivs !== '1' || th.caps !== expectedCaps)
      .map((th) => `${th.tid} ${th.name}: uids ${th.uids.join(' ')} gids ${th.gids.join(' ')} groups [${th.groups}] NoNewPrivs ${th.noNewPrivs} ${th.caps}`)
    assert.deepEqual(wrong(threads), [], `every thread is nobody with no_new_privs and exactly ${expectedCaps}`)

    // events still reach the plugin after the drop
    execFileSync('/bin/echo', ['privileges-test', 'after-drop'])
    await waitFor(() => /saw exec after-drop/.test(run.output()), 'the exec event to reach the plugin', 5000)

    // a plugin added now loads and attaches a new object as nobody
    writeFileSync(join(dir, 'loopgen.ts'), `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'privileges-loopgen',
  objects: ['loopgen'],
  setup(ctx) { ctx.on('loopgen:events', () => {}) },
})
`)
    await waitFor(() => /plugin privileges-loopgen: loaded/.test(run.output()), 'the hot-added loopgen plugin to load', 10_000)
    // the socket was bound before the drop and is served after it
    const admin = await connectAdmin(socket)
    try {
      const objects = await admin.request<{ name: string; users: string[] }[]>('objects')
      const users = objects.find((o) => o.name === 'loopgen')?.users ?? []
      assert.ok(users.length === 1 && users[0]!.includes('loopgen.ts'), `the loopgen object is open for the new plugin: ${JSON.stringify(objects)}`)
      const plugins = await admin.request<{ name: string; status: string }[]>('plugins')
      assert.equal(plugins.find((p) => p.name === 'privileges-loopgen')?.status, 'running', run.output())
    } finally {
      admin.close()
    }
    assert.deepEqual(wrong(threadCredentials(run.child.pid!)), [], 'threads started since (for the new isolate) inherit the reduced credentials')

    run.child.kill('SIGTERM')
    assert.equal(await run.exited, 0, run.output())
    // written by the runtime as nobody, into the directory handed over before the drop
    const logs = join(dataDir, 'logs.jsonl')
    assert.match(readFileSync(logs, 'utf8'), /exec after-drop/)
    assert.deepEqual([statSync(logs).uid, statSync(dataDir).uid], [65534, 65534])
    // nobody may not remove the socket from root's directory; the next start clears it
    assert.match(run.output(), new RegExp(`info: admin socket ${socket} is left for the next start to clear`))
    assert.doesNotMatch(run.output(), /periscope (warn|error):/)
    const second = startRun(dir)
    again = second
    await waitFor(() => /running 2 of \d+ plugins/.test(second.output()), 'the second start', 20_000)
    second.child.kill('SIGTERM')
    assert.equal(await second.exited, 0, second.output())
  } finally {
    await stopRuns(run, again)
    rmSync(dir, { recursive: true, force: true })
  }
})

/** Processes whose parent is `pid`, as each of its threads lists them, with their credentials. */
function childCredentials(pid: number) {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    try {
      return readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter((c) => c !== '')
    } catch {
      return [] // the thread exited between listing and reading
    }
  })
  return children.flatMap((child) => {
    let text: string
    try {
      text = readFileSync(`/proc/${child}/status`, 'utf8')
    } catch {
      return [] // the child exited between listing and reading
    }
    const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? ''
    const mask = (name: string) => BigInt(`0x${field(name)}`)
    return [{
      pid: child, name: field('Name'), state: field('State'), uids: field('Uid').split(/\s+/), gids: field('Gid').split(/\s+/),
      noNewPrivs: field('NoNewPrivs'), effective: mask('CapEff'), permitted: mask('CapPrm'), bounding: mask('CapBnd'), ambient: mask('CapAmb'),
    }]
  })
}

test('after the drop the esbuild service runs as nobody with no_new_privs and only CAP_DAC_READ_SEARCH, and still builds plugins when they and the repository are in directories only root can read', async (t) => {
  // mkdtemp makes 0700 directories owned by root (as /root is): nobody cannot even look inside
  const dir = mkdtempSync(join(tmpdir(), 'periscope-run-esbuild-'))
  const hidden = mkdtempSync(join(tmpdir(), 'periscope-hidden-repo-'))
  mkdirSync(join(hidden, 'repo'))
  for (const d of [dir, hidden]) assert.deepEqual([statSync(d).mode & 0o777, statSync(d).uid], [0o700, 0])
  const plugin = `import { definePlugin } from 'periscope/plugin'
import { label } from './lib/label.ts'

export default definePlugin({
  name: 'esbuild-execs',
  objects: ['exec'],
  setup(ctx) {
    ctx.on('exec:events', (ev) => {
      if (ev.kind === 1 && ev.args[1] === 'esbuild-privileges-test') ctx.log.info(label + ' saw exec ' + ev.args[2])
    })
  },
})
`
  // a helper, not a plugin, since it sits in a subdirectory
  mkdirSync(join(dir, 'lib'), { mode: 0o700 })
  writeFileSync(join(dir, 'lib/label.ts'), `export const label = 'v1'\n`)
  writeFileSync(join(dir, 'execs.ts'), plugin)
  writeFileSync(join(dir, 'periscope.yaml'), `admin:\n  socket: ${join(dir, 'admin.sock')}\nexporter:\n  dataDir: ${join(dir, 'data')}\n  prometheus:\n    enabled: false\n${noShippedPlugins}`)
  const run = startRun(dir, { repoUnder: hidden })
  try {
    await waitFor(() => /running 1 of \d+ plugins/.test(run.output()), 'the runtime to start', 20_000)
    assert.match(run.output(), /continuing as nobody/)
    assert.match(run.output(), new RegExp(`running 1 of \\d+ plugins from ${join(hidden, 'repo', 'plugins')}, ${dir}`), 'the runtime runs from the hidden view of the repository')
    // the service that built the plugins while the runtime was root did not outlive the drop
    const rootChildren = childCredentials(run.child.pid!).filter((c) => c.uids.includes('0'))
    assert.deepEqual(rootChildren.map((c) => `${c.pid} ${c.name} ${c.state}: uids ${c.uids.join(' ')}`), [], 'no child of the runtime runs as root after the drop')

    // an edit rebuilds through a new service, started by the runtime as nobody; it reads a new
    // helper module from the directory only root can read
    const edited = Date.now()
    writeFileSync(join(dir, 'lib/label.ts'), `export const label = 'v2'\n`)
    writeFileSync(join(dir, 'execs.ts'), `${plugin}// edited\n`)
    await waitFor(() => /plugin esbuild-execs: reloaded|failed/.test(run.output()), 'the edited plugin to reload', 10_000)
    t.diagnostic(`reload after the drop, including starting the service: ${Date.now() - edited} ms`)
    assert.doesNotMatch(run.output(), /failed|error/i, run.output())
    const services = childCredentials(run.child.pid!).filter((c) => c.name === 'esbuild')
    assert.equal(services.length, 1, `one esbuild service: ${JSON.stringify(services, (_, v) => typeof v === 'bigint' ? hex(v) : v)}`)
    const [service] = services
    assert.deepEqual(service!.uids, nobody, 'the service runs as nobody')
    assert.deepEqual(service!.gids, nobody)
    assert.equal(service!.noNewPrivs, '1', 'the service cannot gain privileges through an exec')
    // only what reading the plugins needs: not even the BPF capabilities the runtime keeps
    const readOnly = 1n << 2n
    assert.deepEqual([service!.effective, service!.permitted, service!.ambient].map(hex), [readOnly, readOnly, readOnly].map(hex))
    assert.equal(service!.bounding & ~kept, 0n, `bounding set ${hex(service!.bounding)} holds nothing beyond the four kept`)
    // and the runtime's own threads hold no ambient or inheritable capability once it is started
    const runtimeThreads = threadCredentials(run.child.pid!)
    assert.deepEqual(runtimeThreads.filter((th) => th.caps !== expectedCaps).map((th) => `${th.tid} ${th.name}: ${th.caps}`), [])

    // the rebuilt plugin, with the helper it imports, handles a real exec event
    execFileSync('/bin/echo', ['esbuild-privileges-test', 'after-rebuild'])
    await waitFor(() => /v2 saw exec after-rebuild/.test(run.output()), 'the rebuilt plugin to handle an exec event', 5000)
    assert.doesNotMatch(run.output(), /v1 saw exec after-rebuild/)

    run.child.kill('SIGTERM')
    assert.equal(await run.exited, 0, run.output())
  } finally {
    await stopRuns(run)
    rmSync(dir, { recursive: true, force: true })
    // never recursive: were the bind mount visible here, this would delete the repository
    rmdirSync(join(hidden, 'repo'))
    rmdirSync(hidden)
  }
})

test('periscope run refuses a data directory that is not its own, since nobody would have to own it, and says what to do', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-run-shared-'))
  writeFileSync(join(dir, 'execs.ts'), `import { definePlugin } from 'periscope/plugin'
export default definePlugin({ name: 'shared-execs', objects: ['exec'], setup(ctx) { ctx.on('exec:events', () => {}) } })
`)
  // the data directory is the one holding the plugin and the config
  writeFileSync(join(dir, 'periscope.yaml'), `admin:\n  socket: ${join(dir, 'admin.sock')}\nexporter:\n  dataDir: ${dir}\n  prometheus:\n    enabled: false\n${noShippedPlugins}`)
  const run = startRun(dir)
  try {
    assert.equal(await run.exited, 1, run.output())
    assert.match(run.output(), new RegExp(`periscope run: exporter.dataDir ${dir} is not a directory of its own \\(it also holds .*\\); after loading, the runtime continues as nobody`))
    assert.equal(statSync(dir).uid, 0, 'the shared directory was left as it was')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
