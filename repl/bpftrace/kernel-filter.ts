/**
 * The part of a probe's `/filter/` that can run in the kernel, so events the filter drops never
 * reach user space: `pid == N`, `comm == "name"` and `uid == N` conjuncts at the top level of
 * the filter (joined by `&&`, either side of `==`). Anything under `||` or `!` stays in user
 * space. The evaluator always runs the whole filter too, so a kernel filter only ever drops
 * events the filter would drop: it saves work and never changes results.
 *
 * `generic.bpf.c` applies all three per tracepoint (`generic_probe_config`), through
 * `captureEvents` in capture.ts. When they are the whole filter (`kernelAppliesWholeFilter`),
 * the kernel may count the probe's events itself (kernel-count.ts).
 */
import type { Expression, Probe } from './ast.ts'
import type { KernelFilter } from '../../runtime/kernel/tracepoints.ts'

export type { KernelFilter }

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

/** The kernel filter field and value a `name == value` conjunct sets, if the kernel can apply it. */
function kernelPart(name: string, value: bigint | string): ['pid' | 'uid', number] | ['comm', string] | undefined {
  if (name === 'pid' && typeof value === 'bigint' && value > 0n && value < 1n << 32n) return ['pid', Number(value)]
  if (name === 'uid' && typeof value === 'bigint' && value >= 0n && value < 1n << 32n) return ['uid', Number(value)]
  if (name === 'comm' && typeof value === 'string' && Buffer.byteLength(value) <= 15) return ['comm', value]
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
    const part = match && kernelPart(...match)
    if (part?.[0] === 'comm') filter.comm ??= part[1]
    else if (part) filter[part[0]] ??= part[1]
  }
  return filter
}

/**
 * Whether `kernelFilter(probe)` is the whole filter: no filter, or only conjuncts the kernel
 * applies, none contradicting another. The kernel then drops exactly what the filter drops, so
 * the probe's statements may run in the kernel too (kernel-count.ts).
 */
export function kernelAppliesWholeFilter(probe: Probe): boolean {
  if (!probe.predicate) return true
  const filter = kernelFilter(probe)
  return conjuncts(probe.predicate).every((conjunct) => {
    const match = equality(conjunct)
    const part = match && kernelPart(...match)
    return part !== undefined && filter[part[0]] === part[1]
  })
}
