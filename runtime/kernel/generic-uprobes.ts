/**
 * Functions the library's generic uprobe programs (bpf/lib/generic_uprobe.bpf.c) capture, for the
 * REPL and plugins (`ctx.onUprobe`): each attach has a config slot, chosen by its BPF cookie.
 */
import { encodeGenericUprobeConfig, GENERIC_UPROBE_CONFIG_SIZE } from '../../bpf/lib/generic_uprobe.types.ts'

/** The programs plugins' ctx.onUprobe attaches, at a function's entry or at its return. */
export const GENERIC_UPROBE_PROGRAM = 'generic_uprobe:generic_uprobe'
export const GENERIC_URETPROBE_PROGRAM = 'generic_uprobe:generic_uretprobe'

/** generic_uprobe.h's GENERIC_UPROBE_MAX_PROBES: config slots, so functions, one object serves */
export const GENERIC_UPROBE_MAX_PROBES = 512

/**
 * A slot's `probe_config` value: only `tgid`'s calls when not 0, never `excludeTgid`'s (the
 * tracer's own process, which would otherwise trace the calls it makes reading the records), and
 * the stacks to append (bpf/include/event_stacks.h's flags).
 */
export function encodeUprobeConfig(tgid: number, excludeTgid: number, stacks = 0): Uint8Array {
  const value = new Uint8Array(GENERIC_UPROBE_CONFIG_SIZE)
  encodeGenericUprobeConfig({ tgid, exclude_tgid: excludeTgid, stacks }, new DataView(value.buffer), 0)
  return value
}
