/**
 * Errors in a one-liner, printed as bpftrace 0.17 prints them (`Log::log_with_location` in its
 * `src/log.cpp`):
 *
 *     stdin:1:79-82: ERROR: Unknown function: cnt
 *     tracepoint:syscalls:sys_enter_openat /comm == "x"/ { @[str(args->filename)] = cnt(); }
 *                                                                                   ~~~
 *
 * An error spanning lines prints only `stdin:2-4: ERROR: ...`. Tabs in the source line print as
 * four spaces, under the marker too.
 */
import type { Location } from './ast.ts'

export class BpftraceError extends Error {
  readonly loc: Location | undefined

  constructor(message: string, loc?: Location) {
    super(message)
    this.name = 'BpftraceError'
    this.loc = loc
  }
}

/** The error as bpftrace prints it for `source` (read from `filename`, `stdin` for -e). */
export function formatError(source: string, error: BpftraceError, filename = 'stdin'): string {
  const loc = error.loc
  if (!loc) return `ERROR: ${error.message}\n`
  if (loc.line < loc.endLine) return `${filename}:${loc.line}-${loc.endLine}: ERROR: ${error.message}\n`
  let text = `${filename}:${loc.line}:${loc.column}-${loc.endColumn}: ERROR: ${error.message}\n`
  const line = source.split('\n')[loc.line - 1] ?? ''
  if (line === '') return text
  text += `${line.replaceAll('\t', '    ')}\n`
  let marker = ''
  for (let x = 0; x < line.length && x < loc.endColumn - 1; x++) {
    const char = x < loc.column - 1 ? ' ' : '~'
    marker += line[x] === '\t' ? char.repeat(4) : char
  }
  return `${text}${marker}\n`
}

/** A list of errors, each formatted; the REPL prints them all before giving up on a program. */
export class BpftraceErrors extends Error {
  readonly errors: BpftraceError[]

  constructor(errors: BpftraceError[]) {
    super(errors.map((e) => e.message).join('; '))
    this.name = 'BpftraceErrors'
    this.errors = errors
  }

  format(source: string, filename = 'stdin'): string {
    return this.errors.map((error) => formatError(source, error, filename)).join('')
  }
}
