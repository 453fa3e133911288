/**
 * The full path with a realistic record: exec-sized records (1352 bytes, the size of exec.h's
 * exec_event) written by the kernel, through the real ring buffer and the bus, into two plugins,
 * against a host-side reader doing the same decoding twice (bench/kernel-path.ts says how).
 * The target, 100,000 records per CPU-second, is ten times the exec rate of a busy build host.
 *
 *   node_modules/.bin/node bench/full-path-exec.bench.ts
 */
import { EXEC_EVENT_SIZE } from '../bpf/lib/exec.types.ts'
import { measurePath, report } from './kernel-path.ts'

const options = { recordSize: EXEC_EVENT_SIZE, plugins: 2, burst: 4096, warmBursts: 20, timedBursts: 400, rounds: 3 }
if (!report('kernel → bus → 2 plugins, exec-sized records', options, await measurePath(options), 100_000)) process.exitCode = 1
