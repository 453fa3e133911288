/**
 * Tracepoint formats from tracefs for one-liners: the fields `args.name` may name
 * (`tracefsFields()` feeds `check()`). Reading and decoding formats is shared with plugins:
 * runtime/kernel/tracepoints.ts (host side) and runtime/protocols/tracepoint.ts (decoding).
 */
import { readFormat, TRACEFS } from '../../runtime/kernel/tracepoints.ts'
import type { TracepointField } from './check.ts'

export { readFormat, TRACEFS }
export { cString, decodeFields, isDataLoc, parseFormat, type FormatField, type TracepointFormat } from '../../runtime/protocols/tracepoint.ts'

/** `CheckOptions.tracepointFields` over tracefs. */
export function tracefsFields(root = TRACEFS): (category: string, name: string) => TracepointField[] | undefined {
  return (category, name) => readFormat(category, name, root)?.fields
}
