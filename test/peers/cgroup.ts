/**
 * A cgroup v2 directory of a test's own, under the host's cgroup v2 mount (`/sys/fs/cgroup`, or
 * `/sys/fs/cgroup/unified` on a hybrid host), named periscope-test-<pid>-<n>. Processes go in
 * through cgroup.procs. remove() moves whatever is still inside back to the root and removes the
 * directories, children first, so a failed test leaves no cgroup behind.
 *
 *   const cgroup = TestCgroup.create()
 *   t.after(() => cgroup.remove())
 *   cgroup.add(server.pid)            // cgroup.id is what the kernel filters by
 */
import { appendFileSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { cgroup2MountPoints, cgroupId } from '../../runtime/config/cgroups.ts'

let made = 0

function cgroup2Root(): string {
  const [mount] = cgroup2MountPoints()
  if (mount === undefined) throw new Error('cgroup v2 is not mounted on this host; mount it: mount -t cgroup2 none /sys/fs/cgroup/unified')
  return mount
}

export class TestCgroup {
  readonly path: string
  readonly id: number
  readonly #children: TestCgroup[] = []

  private constructor(path: string) {
    mkdirSync(path)
    this.path = path
    this.id = cgroupId(path)
  }

  static create(): TestCgroup {
    return new TestCgroup(join(cgroup2Root(), `periscope-test-${process.pid}-${++made}`))
  }

  /** A cgroup below this one. */
  child(name: string): TestCgroup {
    const child = new TestCgroup(join(this.path, name))
    this.#children.push(child)
    return child
  }

  /** Moves a process (all its threads) into this cgroup. */
  add(pid: number): void {
    appendFileSync(join(this.path, 'cgroup.procs'), `${pid}\n`)
  }

  pids(): number[] {
    return readFileSync(join(this.path, 'cgroup.procs'), 'utf8').split('\n').filter((line) => line !== '').map(Number)
  }

  /** Moves what is left inside to the root cgroup and removes the directories; waits out exiting processes. */
  async remove(): Promise<void> {
    for (const child of this.#children) await child.remove()
    const root = cgroup2Root()
    const deadline = Date.now() + 10_000
    for (;;) {
      for (const pid of this.pids()) {
        try {
          appendFileSync(join(root, 'cgroup.procs'), `${pid}\n`)
        } catch (error) {
          // it exited meanwhile
          if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error
        }
      }
      try {
        rmdirSync(this.path)
        return
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        if (code === 'ENOENT') return
        // a process still counted as inside (exiting) keeps the cgroup busy for a moment
        if (code !== 'EBUSY' || Date.now() > deadline) throw new Error(`remove cgroup ${this.path}: ${(error as Error).message}; pids inside: ${this.pids().join(', ')}`)
      }
      await sleep(10)
    }
  }
}
