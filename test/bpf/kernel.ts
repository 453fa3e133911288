/**
 * Shared by kernel tests: a test may skip only when its feature probe says the kernel lacks the
 * feature, and under PERISCOPE_REQUIRE_BPF=1 (CI) even that skip is a failure.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { TestContext } from 'node:test'
import type { FeatureResult } from '../../runtime/bpf/features.ts'

export const root = fileURLToPath(new URL('../../', import.meta.url))
export const library = join(root, 'bpf/lib')

/** Skips (or, in CI, fails) when `result` says the feature is missing; throws when the probe failed. */
export function requireFeature(t: TestContext, what: string, result: FeatureResult): boolean {
  if (result.status === 'supported') return true
  if (result.status === 'failed') throw new Error(`feature probe for ${what} failed: ${result.reason}`)
  if (process.env.PERISCOPE_REQUIRE_BPF === '1') throw new Error(`PERISCOPE_REQUIRE_BPF=1 but ${what} is unsupported: ${result.reason}`)
  t.skip(`${what} unsupported: ${result.reason}`)
  return false
}

/** Compiles a BPF C fixture from test/bpf/fixtures into a temp dir and returns the object path. */
export function compileFixture(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-fixture-'))
  // the test loads the object while it runs: the directory goes when its process exits
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
  const out = join(dir, `${name}.bpf.o`)
  execFileSync('clang', ['-g', '-O2', '-target', 'bpf', '-D__TARGET_ARCH_x86', '-I', join(root, 'bpf/include'), '-c', join(root, 'test/bpf/fixtures', `${name}.bpf.c`), '-o', out])
  return out
}

export const objectPath = (name: string): string => {
  const path = join(library, `${name}.bpf.o`)
  if (!existsSync(path)) throw new Error(`${path} is missing; run npm run build`)
  return path
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `condition` until true or the deadline passes. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(10)
  }
}

/**
 * CPU seconds process `pid` has used (utime + stime, in USER_HZ ticks of 10 ms): what the samples
 * of a sampling profiler follow. With paravirt steal accounting (on here) this leaves out the time
 * the hypervisor took the vCPU while the process was the one running, which the profiler's timer
 * still counts: an upper bound on samples adds stealSeconds() over the same window.
 */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** Seconds the hypervisor ran others on this VM's vCPUs, all of them summed (steal in /proc/stat). */
export function stealSeconds(): number {
  return Number(readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/ +/)[8]) / 100
}
