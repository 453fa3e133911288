/**
 * `periscope -e 'program'` and `periscope script.bt`: bpftrace's own command line over
 * `runOneLiner`. The program runs until it calls exit() or until Ctrl-C (SIGINT, or SIGTERM),
 * then END runs and the maps print, as `bpftrace -e` prints them. Errors in the program print on
 * stderr as bpftrace prints them (location and column marker; a script's errors name its file)
 * and exit with 1, as bpftrace does.
 */
import { readFileSync } from 'node:fs'
import { missingCapabilities, type CapabilityName } from '../../runtime/privileges.ts'
import { BpftraceErrors } from './errors.ts'
import { runOneLiner } from './run.ts'

export const usage = `usage: periscope [-f text|json] [--json] -e 'program'
       periscope [-f text|json] [--json] file.bt

Runs a bpftrace program (bpftrace 0.17's language and output) until it calls exit() or
until Ctrl-C, then prints its maps. Probes: tracepoint:category:name, uprobe:/path:symbol,
uretprobe:/path:symbol, interval:s:N, BEGIN, END. Example:
  periscope -e 'tracepoint:syscalls:sys_enter_openat { @[comm] = count(); }'`

interface Invocation {
  source: string
  /** what error locations name: stdin for -e, as bpftrace says, else the script's path */
  filename: string
  json: boolean
}

function parseArguments(argv: string[]): Invocation | string {
  let source: string | undefined
  let file: string | undefined
  let json = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '-e') {
      if (argv[i + 1] === undefined) return '-e needs a program'
      source = argv[++i]
    } else if (arg === '--json') json = true
    else if (arg === '-f') {
      const format = argv[++i]
      if (format !== 'json' && format !== 'text') return `-f takes text or json, not ${format === undefined ? 'nothing' : `"${format}"`}`
      json = format === 'json'
    } else if (arg.startsWith('-')) return `unknown option ${arg}`
    else if (file === undefined && source === undefined) file = arg
    else return `unexpected argument "${arg}": give one program, with -e or as a file`
  }
  if (source !== undefined && file !== undefined) return 'give one program: -e or a file, not both'
  if (source !== undefined) return { source, filename: 'stdin', json }
  if (file === undefined) return 'no program: give one with -e, or a .bt file'
  try {
    return { source: readFileSync(file, 'utf8'), filename: file, json }
  } catch (error) {
    return `cannot read the program file ${file}: ${(error as Error).message}`
  }
}

/**
 * Output goes out once per turn of the event loop (records arrive in batches: one write per
 * batch, not per printf), and at once when the run ends.
 */
function batchedStdout(): { write(text: string): void; flush(): void } {
  let pending = ''
  let scheduled = false
  const flush = () => {
    scheduled = false
    if (pending === '') return
    process.stdout.write(pending)
    pending = ''
  }
  return {
    write(text) {
      pending += text
      if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    },
    flush,
  }
}

/**
 * Loading and attaching BPF programs (CAP_BPF, CAP_PERFMON; uprobes through the uprobe PMU:
 * CAP_SYS_ADMIN) and reading tracefs formats (root's files: CAP_DAC_READ_SEARCH).
 */
const NEEDS: CapabilityName[] = ['CAP_BPF', 'CAP_PERFMON', 'CAP_SYS_ADMIN', 'CAP_DAC_READ_SEARCH']

/** What to say when this process cannot run a program, or undefined when it can. */
function lackingPrivileges(invocation: Invocation): string | undefined {
  const missing = missingCapabilities(NEEDS)
  if (missing.length === 0) return undefined
  const held = missing.length === NEEDS.length ? 'none of them' : `not ${missing.join(' or ')}`
  const command = invocation.filename === 'stdin' ? "-e '...'" : invocation.filename
  return `a bpftrace program loads BPF programs and attaches them to tracepoints and uprobes, which needs ${NEEDS.slice(0, -1).join(', ')} and ${NEEDS.at(-1)}; this process holds ${held}. Run it as root: sudo ./periscope ${command}`
}

export async function main(argv: string[]): Promise<number> {
  const invocation = parseArguments(argv)
  if (typeof invocation === 'string') {
    process.stderr.write(`periscope: ${invocation}\n\n${usage}\n`)
    return 2
  }
  const lacking = lackingPrivileges(invocation)
  if (lacking) {
    process.stderr.write(`periscope: ${lacking}\n`)
    return 1
  }
  const abort = new AbortController()
  let interrupts = 0
  const onSignal = () => {
    // a second Ctrl-C while END or the maps are slow: stop at once, as a shell user expects
    if (++interrupts > 1) process.exit(130)
    abort.abort()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  // the reader went away (`| head`): end as SIGPIPE ends bpftrace; the kernel drops the probes
  // with the process. Kept after the run: the last flush may fail after main() returned
  const onStdoutError = (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') process.stderr.write(`periscope: cannot write the output: ${error.message}\n`)
    process.exit(error.code === 'EPIPE' ? 141 : 1)
  }
  process.stdout.on('error', onStdoutError)
  const out = batchedStdout()
  try {
    await runOneLiner(invocation.source, { write: out.write, json: invocation.json, signal: abort.signal })
    return 0
  } catch (error) {
    out.flush()
    if (error instanceof BpftraceErrors) process.stderr.write(error.format(invocation.source, invocation.filename))
    else process.stderr.write(`periscope: ${(error as Error).message}\n`)
    return 1
  } finally {
    out.flush()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
