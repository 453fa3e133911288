/**
 * Who can reach the admin socket, tried as a hostile local user would. Root is needed (not BPF):
 * to hand directories to another user, and to run a client as that user.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs, { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, afterEach, before, test } from 'node:test'
import { connectAdmin } from '../../runtime/admin/client.ts'
import { type AdminServer, startAdminServer } from '../../runtime/admin/server.ts'
import { Bus } from '../../runtime/bus.ts'
import { memoryLogger } from '../../runtime/plugins/log.ts'
import { PluginManager } from '../../runtime/plugins/manager.ts'
import { MemorySink } from '../../runtime/plugins/sink.ts'
import { SyntheticProvider } from '../plugin-fixtures/synthetic.ts'

/** The user playing the other local user. */
const NOBODY = 65534

let base: string
let manager: PluginManager
let bus: Bus
let server: AdminServer | undefined

before(() => {
  assert.equal(process.geteuid!(), 0, 'these tests act as another user, so they run as root')
  bus = new Bus(new SyntheticProvider())
  manager = new PluginManager({ bus, sink: new MemorySink(), log: memoryLogger() })
})
after(async () => {
  await manager.close()
  await bus.close()
})

/** A fresh stand-in for /tmp: root's, world-writable and sticky. */
function freshTmp(): string {
  base = mkdtempSync(path.join(tmpdir(), 'periscope-admin-access-'))
  chmodSync(base, 0o1777)
  return base
}
afterEach(async () => {
  await server?.close()
  server = undefined
  rmSync(base, { recursive: true, force: true })
})

const start = async (socket: string) => {
  server = await startAdminServer({ path: socket, manager, bus, log: memoryLogger() })
  return server
}

/** Connects to `socket` as uid/gid `uid` in a child process; returns 'connected' or the error code. */
function connectAs(uid: number, socket: string): string {
  const script = `require('node:net').connect(process.argv[1]).on('connect', function () { console.log('connected'); this.destroy() }).on('error', (e) => console.log(e.code))`
  const child = spawnSync(process.execPath, ['-e', script, socket], { uid, gid: uid, encoding: 'utf8', cwd: '/' })
  assert.equal(child.status, 0, child.stderr)
  return child.stdout.trim()
}

test('a socket directory that another user created first (in a sticky /tmp) is refused, with how to fix it', async () => {
  const dir = path.join(freshTmp(), 'periscope-0')
  mkdirSync(dir, { mode: 0o777 })
  chownSync(dir, NOBODY, NOBODY)
  await assert.rejects(start(path.join(dir, 'admin.sock')), new RegExp(`admin socket directory ${dir} belongs to uid ${NOBODY}, not to this process \\(uid 0\\).*\`rm -r ${dir}\`.*admin\\.socket`))
})

test('a symbolic link where the socket directory goes is refused, not followed', async () => {
  const tmp = freshTmp()
  const theirs = path.join(tmp, 'theirs')
  mkdirSync(theirs)
  chownSync(theirs, NOBODY, NOBODY)
  const dir = path.join(tmp, 'periscope-0')
  symlinkSync(theirs, dir)
  await assert.rejects(start(path.join(dir, 'admin.sock')), /admin socket directory .*periscope-0 is a symbolic link .*never placed through a link/)
  assert.equal(lstatSync(path.join(theirs, 'admin.sock'), { throwIfNoEntry: false }), undefined, 'nothing was created in the link target')
})

test('an existing directory of ours that group or others can write is refused (the mode is not only applied at creation)', async () => {
  const dir = path.join(freshTmp(), 'periscope-0')
  mkdirSync(dir)
  chmodSync(dir, 0o777)
  await assert.rejects(start(path.join(dir, 'admin.sock')), new RegExp(`admin socket directory ${dir} is writable by its group and others \\(mode 0777\\).*\`chmod 700 ${dir}\``))
  chmodSync(dir, 0o770)
  await assert.rejects(start(path.join(dir, 'admin.sock')), /is writable by its group \(mode 0770\)/)
})

test('a directory above the socket that others can write without the sticky bit is refused', async () => {
  const tmp = freshTmp()
  const open = path.join(tmp, 'open')
  mkdirSync(open)
  chmodSync(open, 0o777)
  await assert.rejects(start(path.join(open, 'periscope', 'admin.sock')), new RegExp(`${open} above it is writable by its group and others without the sticky bit \\(mode 0777\\)`))
  const theirs = path.join(tmp, 'theirs')
  mkdirSync(theirs)
  chownSync(theirs, NOBODY, NOBODY)
  await assert.rejects(start(path.join(theirs, 'periscope', 'admin.sock')), new RegExp(`${theirs} above it belongs to uid ${NOBODY}`))
})

test('a file that is not a socket at the socket path is refused and left alone', async () => {
  const dir = path.join(freshTmp(), 'periscope-0')
  mkdirSync(dir, { mode: 0o700 })
  const file = path.join(dir, 'admin.sock')
  writeFileSync(file, 'not a socket')
  await assert.rejects(start(file), /admin socket path .*admin\.sock exists and is not a socket; Periscope will not replace it/)
  assert.equal(readFileSync(file, 'utf8'), 'not a socket')
})

test('the directory is created 0700, the socket 0600, and another user cannot connect even through an open directory', async () => {
  const tmp = freshTmp()
  const fresh = await start(path.join(tmp, 'periscope-0', 'admin.sock'))
  assert.equal(statSync(path.dirname(fresh.path)).mode & 0o7777, 0o700)
  assert.equal(lstatSync(fresh.path).mode & 0o777, 0o600)
  await fresh.close()

  // a directory others may enter (0755 is allowed: nobody else can write it), so only the socket's own mode stops them
  const open = path.join(tmp, 'open')
  mkdirSync(open, { mode: 0o755 })
  chmodSync(open, 0o755)
  const served = await start(path.join(open, 'admin.sock'))
  assert.equal(connectAs(NOBODY, served.path), 'EACCES')
  assert.equal(connectAs(0, served.path), 'connected')
  const client = await connectAdmin(served.path)
  assert.deepEqual(await client.request('plugins'), [])
  client.close()
})

test('no chmod by path after listen: a symlink swapped in for the socket cannot redirect a mode change', async () => {
  // the attacker's swap, made at the exact moment a chmod after listen would run
  const dir = path.join(freshTmp(), 'periscope-0')
  mkdirSync(dir, { mode: 0o700 })
  const victim = path.join(base, 'victim')
  writeFileSync(victim, 'shared')
  chmodSync(victim, 0o644)
  const socket = path.join(dir, 'admin.sock')
  const chmodSyncBefore = fs.chmodSync
  fs.chmodSync = (file, mode) => {
    if (file === socket) {
      rmSync(socket)
      symlinkSync(victim, socket)
    }
    chmodSyncBefore(file, mode)
  }
  syncBuiltinESMExports()
  try {
    await start(socket)
  } catch {
    // refusing to serve is fine; changing the victim is not
  } finally {
    fs.chmodSync = chmodSyncBefore
    syncBuiltinESMExports()
  }
  assert.equal(statSync(victim).mode & 0o777, 0o644, 'the file behind the symlink kept its mode')
})
