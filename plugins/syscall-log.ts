/**
 * A log record for every syscall of the processes named in `target_pids`, from the `syscall_log`
 * object, strace-like: the syscall's name and each argument by the name and type this kernel
 * declares it with (`ctx.kernel.syscalls()`), its return value or error, and how long it took.
 * Off by default, and it logs nothing until `target_pids` names a process (filtered in the
 * kernel: other processes' calls cost a map lookup each and never leave it). A target that exits
 * leaves the kernel's filter, so a process that later gets its pid is not logged; a reload of the
 * plugin names the pids again, whoever has them then.
 *
 * Secrets stay out: the only process memory read is the path and name arguments (`filename`,
 * `pathname`, `oldname`...), copied in the kernel at the call's entry, at most 255 bytes each and
 * two per call (a longer one ends in `…`). Buffers (`read`/`write` data), messages, socket options
 * and key payloads are never read: their pointers are logged in hex. The argv and environment of
 * an `execve` are pointers too.
 *
 * Log records (event name `syscall`; severity `info`, `warn` for a call that failed):
 * - body: `openat(dfd=-100, filename="/etc/hosts", flags=524288, mode=00) = 3`, or
 *   `= -1 ENOENT` when it failed, or `= ?` for a call that does not return (exit_group).
 * - `process.pid`, `thread.id`, `process.executable.name` (comm), `syscall.name`,
 *   `syscall.return` (the raw return value, absent for a call that does not return),
 *   `error.type` (the errno's name, when it failed), `syscall.duration` (s), and
 *   `syscall.args.<name>` for each argument: signed and unsigned integers by their C type, mode
 *   bits as an octal string, pointers as a hex string (`NULL` for 0), path and name arguments as
 *   their text.
 * - The time is the call's entry.
 *
 * Metrics:
 * - `periscope.syscall_log.map_overflow` {call}: calls not logged because the kernel's table of
 *   calls in flight (`in_flight`, 4096 threads) was full. Records the ring could not take are
 *   counted by the runtime as the object's drops.
 */
import { definePlugin, type PluginContext, type SyscallDescription, type TopicEvent } from 'periscope/plugin'
import {
  decodeCall, encodeSyscallLogDecode, returnsNever, stringArguments, SYSCALL_LOG_DECODE_SIZE, SYSCALL_LOG_MAX_NR,
} from 'periscope/protocols/syscall-log'

const config = {
  /** The processes whose every syscall is logged (their thread-group ids, as `ps` shows them). */
  target_pids: [] as number[],
  /** How often the overflow count is read and exported. */
  collect_interval_ms: 10_000,
}
type Config = typeof config

const u32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer)

export default definePlugin({
  name: 'syscall-log',
  objects: ['syscall_log'],
  config,
  async setup(ctx) {
    const syscalls = await ctx.kernel.syscalls()
    const errnoNames = await ctx.kernel.errnoNames()
    await claimDecoding(ctx, syscalls)
    const targets = ctx.config.target_pids
    if (!Array.isArray(targets) || !targets.every((pid) => Number.isInteger(pid) && pid > 0)) {
      throw new Error(`syscall-log: target_pids must be a list of process ids, got ${JSON.stringify(targets)}`)
    }
    for (const pid of targets) await ctx.map('syscall_log:targets').claim(u32(pid), new Uint8Array([1]))
    ctx.on('syscall_log:records', (record) => logCall(ctx, record, syscalls, errnoNames))
    let reported = 0
    ctx.every(ctx.config.collect_interval_ms, async () => {
      let total = 0
      for (const [, perCpu] of await ctx.map('syscall_log:overflows').entriesPerCpu()) {
        for (const bytes of perCpu) total += Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true))
      }
      ctx.emit.metric({
        name: 'periscope.syscall_log.map_overflow', kind: 'counter', unit: '{call}', value: total - reported,
        description: 'Syscalls not logged because the table of calls in flight was full', attributes: { 'bpf.map': 'in_flight' },
      })
      reported = total
    })
    ctx.log.info(targets.length === 0
      ? 'no target_pids: no syscall is logged (name processes in plugins.syscall-log.config.target_pids)'
      : `logging every syscall of ${targets.length === 1 ? 'process' : 'processes'} ${targets.join(', ')}`)
  },
})

/** Tells the kernel, per syscall, which arguments to copy as strings and whether it returns. */
async function claimDecoding(ctx: PluginContext<Config>, syscalls: (SyscallDescription | null)[]): Promise<void> {
  const decode = ctx.map('syscall_log:decode')
  for (const syscall of syscalls) {
    if (syscall === null || syscall.number >= SYSCALL_LOG_MAX_NR) continue
    const strings = stringArguments(syscall)
    const noReturn = returnsNever(syscall)
    if (strings.length === 0 && !noReturn) continue
    const value = new Uint8Array(SYSCALL_LOG_DECODE_SIZE)
    encodeSyscallLogDecode({ string_args: Uint8Array.from([strings[0] ?? -1, strings[1] ?? -1], (i) => i + 1), no_return: noReturn ? 1 : 0, pad: 0 }, new DataView(value.buffer), 0)
    await decode.claim(u32(syscall.number), value)
  }
}

function logCall(ctx: PluginContext<Config>, record: TopicEvent<'syscall_log:records'>, syscalls: (SyscallDescription | null)[], errnoNames: string[]): void {
  const call = decodeCall(record, syscalls[record.nr], errnoNames)
  const attributes: Record<string, string | number> = {
    'process.pid': record.pid, 'thread.id': record.tid, 'process.executable.name': record.comm,
    'syscall.name': call.name, 'syscall.duration': record.duration_ns / 1e9,
  }
  if (call.returned) attributes['syscall.return'] = record.ret
  if (call.error !== undefined) attributes['error.type'] = call.error
  for (const [name, value] of Object.entries(call.args)) attributes[`syscall.args.${name}`] = value
  ctx.emit.log({
    eventName: 'syscall', severity: call.error === undefined ? 'info' : 'warn', timeNs: ctx.time.wallNs(record.start_ns),
    body: call.body, attributes,
  })
}
