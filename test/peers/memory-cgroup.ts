/**
 * A memory cgroup of a test's own, limited to a number of bytes with no swap: cgroup v2's memory
 * controller where the v2 hierarchy has it, else cgroup v1's (a hybrid host binds it to v1). The
 * shell of `spawnInside` moves itself in before it execs, so every byte the program allocates is
 * charged there. remove() waits until a killed process is reaped and removes the directory.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { cgroup2MountPoints } from '../../runtime/config/cgroups.ts'

let made = 0

export interface MemoryCgroup {
  /** Starts `program args` inside the cgroup (stdio ignored). */
  spawnInside(program: string, args: string[]): ChildProcess
  remove(): Promise<void>
}

export function memoryCgroup(limit: number): MemoryCgroup {
  const name = `periscope-test-memory-${process.pid}-${++made}`
  const v2 = cgroup2MountPoints().find((mount) => readFileSync(join(mount, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('memory'))
  let path: string
  if (v2 !== undefined) {
    // the controller must be on in the parent's subtree for a child to have memory.max
    writeFileSync(join(v2, 'cgroup.subtree_control'), '+memory')
    path = join(v2, name)
    mkdirSync(path)
    writeFileSync(join(path, 'memory.max'), String(limit))
    writeFileSync(join(path, 'memory.swap.max'), '0')
  } else if (existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes')) {
    path = join('/sys/fs/cgroup/memory', name)
    mkdirSync(path)
    writeFileSync(join(path, 'memory.limit_in_bytes'), String(limit))
    if (existsSync(join(path, 'memory.memsw.limit_in_bytes'))) writeFileSync(join(path, 'memory.memsw.limit_in_bytes'), String(limit))
  } else {
    throw new Error('no memory cgroup controller on this host (neither in cgroup v2 nor mounted as cgroup v1 at /sys/fs/cgroup/memory)')
  }
  const procs = join(path, 'cgroup.procs')
  return {
    spawnInside(program, args) {
      return spawn('/bin/sh', ['-c', 'echo $$ > "$PROCS" && exec "$@"', 'sh', program, ...args], { env: { PROCS: procs }, stdio: 'ignore' })
    },
    async remove() {
      const deadline = Date.now() + 10_000
      for (;;) {
        try {
          rmdirSync(path)
          return
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code
          if (code === 'ENOENT') return
          // the killed process is still counted inside until it is reaped
          if (code !== 'EBUSY' || Date.now() > deadline) throw new Error(`remove cgroup ${path}: ${(error as Error).message}`)
          await sleep(20)
        }
      }
    },
  }
}

