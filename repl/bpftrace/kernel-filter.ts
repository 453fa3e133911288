/**
 * The part of a probe's `/filter/` that can run in the kernel, so events the filter drops never
 * reach user space: `pid == N`, `comm == "name"` and `uid == N` conjuncts at the top level of
 * the filter (joined by `&&`, either side of `==`). Anything under `||` or `!` stays in user
 * space. The evaluator always runs the whole filter too, so a kernel filter only ever drops
 * events the filter would drop: it saves work and never changes results.
 *
 * What `generic.bpf.c` applies today: `pid` (its `generic_probe_config.tgid`). `comm` and
 * `uid` are returned for the kernel side to grow into (a `comm[16]` and a `uid` in the probe
 * config, compared against `bpf_get_current_comm` and `bpf_get_current_uid_gid`); until then
 * `generic` reports them in `notInGeneric` and user space filters them.
 */
import type { Expression, Probe } from './ast.ts'

export interface KernelFilter {
  /** thread group id (bpftrace's pid) */
  pid?: number
  /** at most 15 bytes, as the kernel's comm */
  comm?: string
  uid?: number
  /** the fields above that generic.bpf.c cannot apply yet */
  notInGeneric: ('comm' | 'uid')[]
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
  const filter: KernelFilter = { notInGeneric: [] }
  if (!probe.predicate) return filter
  for (const conjunct of conjuncts(probe.predicate)) {
    const match = equality(conjunct)
    if (!match) continue
    const [name, value] = match
    if (name === 'pid' && typeof value === 'bigint' && value > 0n && value < 1n << 32n) filter.pid ??= Number(value)
    else if (name === 'uid' && typeof value === 'bigint' && value >= 0n && value < 1n << 32n) filter.uid ??= Number(value)
    else if (name === 'comm' && typeof value === 'string' && Buffer.byteLength(value) <= 15) filter.comm ??= value
  }
  if (filter.comm !== undefined) filter.notInGeneric.push('comm')
  if (filter.uid !== undefined) filter.notInGeneric.push('uid')
  return filter
}
