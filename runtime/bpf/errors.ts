/**
 * The one error class of the BPF layer. The addon throws it (it is handed over at start-up) with
 * the libbpf operation, errno and any captured libbpf/verifier log; `explain()` adds what to do.
 */
export interface BpfErrorDetails {
  op: string
  errno: number
  code: string
  /** libbpf's output during the failed operation; for load failures it holds the verifier log */
  log?: string
}

export class BpfError extends Error {
  readonly op: string
  readonly errno: number
  readonly code: string
  readonly log: string

  constructor(message: string, details: BpfErrorDetails) {
    super(message)
    this.name = 'BpfError'
    this.op = details.op
    this.errno = details.errno
    this.code = details.code
    this.log = details.log ?? ''
  }

  /** The last `lines` lines of the captured log, where the verifier states its reason. */
  logTail(lines = 20): string {
    return this.log.trimEnd().split('\n').slice(-lines).join('\n')
  }
}

const hints: Record<string, string> = {
  EPERM: 'run as root, or grant CAP_BPF and CAP_PERFMON (plus CAP_NET_ADMIN for tc/cgroup programs)',
  EACCES: 'the verifier rejected the program; see the log below',
  ENOENT: 'the target does not exist on this kernel (check the name, or `ls /sys/kernel/tracing/events`)',
  ENOTSUPP: 'this kernel does not support this; `periscope check` lists what it does support',
  EOPNOTSUPP: 'this kernel does not support this; `periscope check` lists what it does support',
  EINVAL: 'the kernel refused the arguments; `periscope check` lists what this kernel supports',
  E2BIG: 'the program or map is larger than this kernel accepts',
  ENOMEM: 'out of locked memory or map space; raise `ulimit -l` or reduce map sizes',
  LIBBPF_FORMAT: 'the file is not a valid BPF ELF object; rebuild it with `npm run build`',
}

/** Wraps a failure with context and the next step, keeping errno/code/op/log for callers. */
export function explain(error: unknown, context: string): Error {
  if (!(error instanceof BpfError)) return error instanceof Error ? error : new Error(String(error))
  const hint = hints[error.code]
  let message = `${context}: ${error.message}`
  if (hint !== undefined) message += ` (${hint})`
  const tail = error.logTail()
  if (tail !== '') message += `\n--- libbpf log (tail) ---\n${tail}`
  const wrapped = new BpfError(message, error)
  wrapped.stack = `${wrapped.name}: ${message}\n${(error.stack ?? '').split('\n').slice(1).join('\n')}`
  return wrapped
}
