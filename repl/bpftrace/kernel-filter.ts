/**
 * The part of a probe's `/filter/` that can run in the kernel, so events the filter drops never
 * reach user space: `pid == N`, `comm == "name"` and `uid == N` conjuncts at the top level of
 * the filter (joined by `&&`, either side of `==`). Anything under `||` or `!` stays in user
 * space. The evaluator always runs the whole filter too, so a kernel filter only ever drops
 * events the filter would drop: it saves work and never changes results.
 *
 * `generic.bpf.c` applies all three per tracepoint (`generic_probe_config`), through
 * `captureEvents` in capture.ts.
 */
import type { Expression, Probe } from './ast.ts'

export interface KernelFilter {
  /** thread group id (bpftrace's pid) */
  pid?: number
  /** at most 15 bytes, as the kernel's comm */
  comm?: string
  uid?: number
}

function conjuncts(expression: Expression): Expression[] {
  if (expression.kind === 'binary' && expression.operator === '&&') return [...conjuncts(expression.left), ...conjuncts(expression.right)]
  return [expression]
}

/** `builtin == literal` or `literal == builtin`, as [builtin name, literal]. */
function equality(expression: Expression): [string, bigint | string] | undefined {
  if (expression.kind !== 'binary' || expression.operator !== '==') return undefined
  const { left, right } = expression
  for (const [a, b] of [[left, right], [right, left]]) {
    if (a.kind === 'builtin' && (b.kind === 'integer' || b.kind === 'string')) return [a.name, b.value]
  }
  return undefined
}

/**
 * The kernel-side filter of one probe. Contradicting conjuncts (`pid == 1 && pid == 2`) keep
 * the first: the user-space filter drops everything anyway.
 */
export function kernelFilter(probe: Probe): KernelFilter {
  const filter: KernelFilter = {}
  if (!probe.predicate) return filter
  for (const conjunct of conjuncts(probe.predicate)) {
    const match = equality(conjunct)
    if (!match) continue
    const [name, value] = match
    if (name === 'pid' && typeof value === 'bigint' && value > 0n && value < 1n << 32n) filter.pid ??= Number(value)
    else if (name === 'uid' && typeof value === 'bigint' && value >= 0n && value < 1n << 32n) filter.uid ??= Number(value)
    else if (name === 'comm' && typeof value === 'string' && Buffer.byteLength(value) <= 15) filter.comm ??= value
  }
  return filter
}
