/**
 * The unwind-burner fixture of the CPU profile tests (test/bpf/fixtures/unwind-burner.c: one known
 * call chain, always on the CPU): built with `cflags` into a temporary folder before the file's
 * tests, which start once it has run 50 ms of CPU; killed, and its folder removed, after them.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before } from 'node:test'
import { pollUntil } from '../peers/poll.ts'
import { root } from './kernel.ts'

export interface Burner {
  /** The temporary folder, for other binaries of the file's tests. */
  readonly work: string
  /** The burner's executable. */
  readonly path: string
  /** The running burner's pid (from the file's tests on). */
  readonly pid: number
}

export function useBurner(folderPrefix: string, cflags: string[]): Burner {
  const work = mkdtempSync(join(tmpdir(), folderPrefix))
  const path = join(work, 'burner')
  let child: ChildProcess | undefined

  before(async () => {
    execFileSync('cc', ['-O2', ...cflags, '-o', path, join(root, 'test/bpf/fixtures/unwind-burner.c')])
    const running = spawn(path, { stdio: 'ignore', env: {} })
    child = running
    const userTicks = () => Number(readFileSync(`/proc/${running.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[11])
    await pollUntil(() => userTicks() >= 5, { what: 'the burner to run 50 ms of CPU', timeoutMs: 60_000 })
  })

  after(() => {
    child?.kill('SIGKILL')
    rmSync(work, { recursive: true, force: true })
  })

  return {
    work,
    path,
    get pid() {
      if (child?.pid === undefined) throw new Error('the burner runs only from the tests on (it starts in a before hook)')
      return child.pid
    },
  }
}
