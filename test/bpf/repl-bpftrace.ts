/**
 * Runs Debian's bpftrace (0.17) for the REPL's comparison tests: its stdout without the
 * "Attaching N probes..." line, so tests compare what a program prints with what ours prints;
 * bpftrace running beside ours on one workload; and the workloads, held on their stdin until
 * both tracers have attached.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { BpftraceErrors } from '../../repl/bpftrace/errors.ts'
import { runOneLiner } from '../../repl/bpftrace/run.ts'
import { waitFor } from './kernel.ts'

export function bpftraceVersion(): string {
  const run = spawnSync('bpftrace', ['--version'], { encoding: 'utf8' })
  if (run.error) throw new Error(`bpftrace is needed to compare the REPL's output with it: ${run.error.message}; install it with apt-get install bpftrace`)
  return run.stdout.trim()
}

/**
 * Output of `bpftrace [-f json] -e program`, for a program that ends itself with exit();
 * undefined when bpftrace cannot load the program it generated (0.17 emits misaligned stack
 * accesses for some string-keyed hist and stats maps, which the verifier refuses).
 */
export function runBpftrace(program: string, options: { json?: boolean } = {}): string | undefined {
  const args = [...(options.json ? ['-f', 'json'] : []), '-e', program]
  const run = spawnSync('bpftrace', args, { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 })
  if (run.error) throw new Error(`bpftrace ${args.join(' ')}: ${run.error.message}`)
  if (run.status !== 0 && /Error loading program/.test(run.stderr) && /misaligned stack access/.test(spawnSync('bpftrace', ['-v', '-e', program], { encoding: 'utf8', timeout: 120_000 }).stderr)) return undefined
  if (run.status !== 0) throw new Error(`bpftrace exited with ${run.status} for:\n${program}\n${run.stderr}`)
  const firstLine = run.stdout.indexOf('\n')
  return run.stdout.slice(firstLine + 1)
}

/**
 * Errors bpftrace reports for `program` (its stderr without the RLIMIT_MEMLOCK warning it
 * prints on this kernel), for comparing error messages.
 */
export function bpftraceErrors(program: string): string {
  const run = spawnSync('bpftrace', ['-e', program], { encoding: 'utf8', timeout: 120_000 })
  return run.stderr.split('\n').filter((line) => !line.includes('RLIMIT_MEMLOCK')).join('\n')
}

/** A process held on its stdin until released: `line()` lets it past one read, `release()` ends its stdin and waits for a 0 exit. */
export interface HeldProcess {
  pid: number
  line(): void
  release(): Promise<void>
  kill(): void
}

/** Starts `file args`, which reads its stdin before its work; `what` names it in a failure. */
export function holdProcess(file: string, args: string[], what: string, options: Pick<SpawnOptions, 'uid' | 'gid'> = {}): HeldProcess {
  const child: ChildProcess = spawn(file, args, { ...options, stdio: ['pipe', 'ignore', 'inherit'] })
  const exited = once(child, 'exit')
  return {
    pid: child.pid!,
    line: () => { child.stdin!.write('go\n') },
    async release() {
      child.stdin!.end('go\n')
      const [code] = await exited
      assert.equal(code, 0, `${what} failed`)
    },
    kill: () => { child.kill('SIGKILL') },
  }
}

/** A shell that execs `command` (same pid) once released. */
export const heldCommand = (command: string): HeldProcess => holdProcess('/bin/sh', ['-c', `read go; exec ${command}`], command)

/**
 * bpftrace running `program`; `started` resolves once its BEGIN printed "ready" (bpftrace runs
 * BEGIN after attaching every probe).
 */
export function startBpftrace(program: string) {
  const child = spawn('bpftrace', ['-e', program], { stdio: ['ignore', 'pipe', 'ignore'] })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  const exited = once(child, 'close')
  return {
    printed: () => stdout,
    started: waitFor(() => stdout.includes('ready\n') || child.exitCode !== null, 'bpftrace attaching its probes', 120_000).then(() => assert.equal(child.exitCode, null, 'bpftrace exited before attaching')),
    /** everything it printed once it exits (by itself, or on SIGINT as Ctrl-C) */
    output: async (interrupt = false) => {
      if (interrupt) child.kill('SIGINT')
      await exited
      return stdout
    },
    kill: () => { child.kill('SIGKILL') },
  }
}

/**
 * A one-liner whose BEGIN prints "ready", run through runOneLiner and by bpftrace on `workload`,
 * released once both attached; what each printed once the program called exit(). With
 * `whileAlive`, the workload is let go with a line and released only once both printed (a
 * tracer names user addresses only while their process lives).
 */
export async function besideBpftrace(source: string, workload: HeldProcess, options: { whileAlive?: boolean } = {}): Promise<{ ours: string; theirs: string }> {
  const bpftrace = startBpftrace(source)
  const abort = new AbortController()
  let ours = ''
  try {
    const run = runOneLiner(source, { write: (text) => { ours += text }, signal: abort.signal })
    await waitFor(() => ours.includes('ready\n'), 'runOneLiner attaching its probes', 60_000)
    await bpftrace.started
    if (options.whileAlive) workload.line()
    else await workload.release()
    await run
    const theirs = await bpftrace.output()
    if (options.whileAlive) await workload.release()
    return { ours, theirs }
  } finally {
    abort.abort()
    workload.kill()
    bpftrace.kill()
  }
}

/**
 * A one-liner whose BEGIN prints "ready", run on `workload` until Ctrl-C, which comes once the
 * workload is done: the event loop stays blocked until then (a zombie: nobody reaped it yet), so
 * every record still waits in the ring buffer when Ctrl-C comes. What it printed.
 */
export async function ctrlCAfterExit(source: string, workload: HeldProcess): Promise<string> {
  const abort = new AbortController()
  let ours = ''
  try {
    const run = runOneLiner(source, { write: (text) => { ours += text }, signal: abort.signal })
    await waitFor(() => ours.includes('ready\n'), 'runOneLiner attaching its probes', 60_000)
    workload.release().catch(() => {})
    while (!/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${workload.pid}/stat`, 'utf8'))) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1)
    abort.abort()
    await run
    return ours
  } finally {
    abort.abort()
    workload.kill()
  }
}

/** The located errors runOneLiner refuses `source` with, printed as bpftrace prints them. */
export async function errorOf(source: string): Promise<string> {
  try {
    await runOneLiner(source, { write: () => {} })
  } catch (error) {
    if (error instanceof BpftraceErrors) return error.format(source)
    throw error
  }
  throw new Error(`${source} ran without an error`)
}
