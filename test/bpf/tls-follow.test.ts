/**
 * followOpenSsl (runtime/protocols/tls-follow.ts) checks every running executable for an OpenSSL
 * linked in statically, as Node's is. An executable deleted after it started, or run from a memfd,
 * has no name to open: it is passed over without a warning, and the check goes on to the next.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { copyFileSync, mkdtempSync, realpathSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import type { ObjectProvider } from '../../runtime/bus.ts'
import { openLibraryObject } from '../../runtime/library/index.ts'
import { startHarness } from '../plugin-harness.ts'
import { root } from './kernel.ts'

const followerPlugin = `import { definePlugin } from 'periscope/plugin'
import { followOpenSsl } from 'periscope/protocols/tls-follow'
export default definePlugin({
  name: 'openssl-follower',
  objects: ['sockdata', 'exec'],
  async setup(ctx) {
    const follower = await followOpenSsl(ctx, (message) => ctx.emit.log({ body: 'warning ' + message }))
    let files: string | undefined
    ctx.every('50ms', () => {
      const now = follower.files.sort().join(',')
      if (now !== files) ctx.emit.log({ body: 'files ' + now })
      files = now
    })
  },
})
`

test('an executable run from a memfd is passed over without a warning, and the executables after it are still checked', async () => {
  const work = mkdtempSync(join(tmpdir(), 'periscope-tls-follow-'))
  const children: ChildProcess[] = []
  const node = realpathSync(process.execPath)
  try {
    // Node from a memfd first, then a copy of Node at a path of its own: the follower checks the
    // running executables in the kernel's task order, so once the copy is followed, the memfd
    // one was checked before it
    children.push(spawn('python3', ['-c', `import os, sys
fd = os.memfd_create('periscope-test-node')
os.write(fd, open(${JSON.stringify(node)}, 'rb').read())
os.execve(fd, ['node', '-e', 'setInterval(() => {}, 1000)'], {})`], { stdio: 'ignore' }))
    const copy = join(work, 'node-copy')
    copyFileSync(node, copy)
    children.push(spawn(copy, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' }))
    const provider: ObjectProvider = { open: (name, settings) => openLibraryObject(name, { settings, log: () => {} }) }
    const h = await startHarness({ provider, decodersPath: join(root, 'bpf/lib/index.types.ts'), plugins: { 'openssl-follower.ts': followerPlugin } })
    try {
      const logs = () => h.sink.signals('openssl-follower').logs.map((l) => String(l.body))
      await h.waitFor(() => logs().some((l) => l.startsWith('files ') && l.slice('files '.length).split(',').includes(copy)), 'the copy of Node to be followed', 120_000)
      assert.deepEqual(logs().filter((l) => l.startsWith('warning ') && l.includes('memfd:periscope-test-node')), [])
    } finally {
      await h.close()
    }
  } finally {
    for (const child of children) child.kill('SIGKILL')
    rmSync(work, { recursive: true, force: true })
  }
})
