/**
 * The kernel's BPF run-time stats: while they are on, the kernel counts each program's runs and
 * the time spent in them (bpf_prog_info run_cnt and run_time_ns; LoadedObject.programStats reads
 * them). They cost two clock reads per program run (80 to 130 ns a run on a VM here: the
 * syscall-overhead benchmark measures it), so the kernel keeps them off by default.
 * BPF_ENABLE_STATS turns them on for as long as its fd is open, and the kernel turns them off
 * again when the last holder closes it, or the process ends, whatever way it ends: nothing to
 * restore by hand, and the kernel.bpf_stats_enabled sysctl (a separate holder) is left as it was.
 */
import { closeSync } from 'node:fs'
import { BpfError, explain } from './errors.ts'
import { native } from './native.ts'

/** enum bpf_stats_type */
const BPF_STATS_RUN_TIME = 0

export interface RunTimeStats {
  /** Lets go of this holder's claim; the stats stay on while another holder (or the sysctl) keeps them. */
  close(): void
}

/**
 * Turns run-time stats on until close(). Throws a BpfError when the kernel refuses: EPERM without
 * CAP_SYS_ADMIN (needed while the runtime is still root, before it drops privileges).
 */
export function enableRunTimeStats(): RunTimeStats {
  let fd: number
  try {
    fd = native.enableStats(BPF_STATS_RUN_TIME)
  } catch (error) {
    const what = 'turn on the kernel\'s BPF run-time stats (BPF_ENABLE_STATS), which give each program\'s run time and count'
    // explain()'s EPERM hint names the capabilities for programs; this one needs another
    if (error instanceof BpfError && error.code === 'EPERM') {
      throw new BpfError(`${what}: ${error.message} (it needs CAP_SYS_ADMIN: start Periscope as root, or turn the stats on with sysctl kernel.bpf_stats_enabled=1)`, error)
    }
    throw explain(error, what)
  }
  let open = true
  return {
    close() {
      if (!open) return
      open = false
      closeSync(fd)
    },
  }
}
