/**
 * test/bpf/fixtures/sched-workload.c, built once per test process, and its `threads` mode run to
 * its end: shared by the tests of the objects that report a process's end (sched, fileio).
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { root, waitFor } from './kernel.ts'

let built: string | undefined

/** The workload's path, compiled into a temp dir that goes when the test process exits. */
export function schedWorkload(): string {
  if (built !== undefined) return built
  const dir = mkdtempSync(join(tmpdir(), 'periscope-sched-workload-'))
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'sched-workload')
  execFileSync('cc', ['-O2', '-Wall', '-pthread', '-o', path, join(root, 'test/bpf/fixtures/sched-workload.c')])
  built = path
  return path
}

/**
 * Runs `sched-workload threads`: waits until its main thread is gone, lets its threads end it
 * together, and returns once it was reaped (every thread past its exit tracepoint, every record
 * it made in the ring). `heldNs` is a time it surely lived (while it waited for the test),
 * `spawnToExitNs` a time it surely lived within.
 */
export async function runThreads(threads: number, exitCode: number): Promise<{ pid: number; heldNs: bigint; spawnToExitNs: bigint }> {
  const spawnedAt = process.hrtime.bigint()
  const child = spawn(schedWorkload(), ['threads', String(threads), String(exitCode)])
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
  let readyAt: bigint, releasedAt: bigint
  try {
    await waitFor(() => output.includes('ready\n'), 'the workload\'s threads to start and its main thread to end', 10_000)
    readyAt = process.hrtime.bigint()
    // the main thread is a zombie (listed until the group is gone), the others run
    const state = (path: string): string => readFileSync(path, 'utf8').split(') ')[1]![0]!
    assert.deepEqual([readdirSync(`/proc/${child.pid}/task`).length, state(`/proc/${child.pid}/stat`)], [threads + 1, 'Z'])
    child.stdin.write('go\n')
    releasedAt = process.hrtime.bigint()
  } catch (error) {
    child.kill('SIGKILL')
    throw error
  }
  assert.equal(await exited, exitCode, output)
  return { pid: child.pid!, heldNs: releasedAt - readyAt, spawnToExitNs: process.hrtime.bigint() - spawnedAt }
}
