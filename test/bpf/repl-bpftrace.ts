/**
 * Runs Debian's bpftrace (0.17) for the REPL's comparison tests: its stdout without the
 * "Attaching N probes..." line, so tests compare what a program prints with what ours prints.
 */
import { spawnSync } from 'node:child_process'

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
