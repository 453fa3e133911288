/**
 * One call from source text to a program ready to run: `compileProgram(source, options)` parses
 * and checks it, and throws `BpftraceErrors` (from `./errors.ts`) (format them with `.format(source)`) when it is
 * not valid or not in Periscope's subset. The REPL and `periscope -e` start here.
 */
import { check, type CheckedProgram, type CheckOptions } from './check.ts'
import { parse } from './parser.ts'

export function compileProgram(source: string, options: CheckOptions = {}): CheckedProgram {
  return check(parse(source), options)
}
