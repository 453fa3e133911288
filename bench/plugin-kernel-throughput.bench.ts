/**
 * Kernel to plugin handler: 64-byte loopgen records from the kernel, through the real ring buffer
 * and the bus, into one plugin's handler reading one decoded field per event, against a host-side
 * reader decoding the same field with the same generated decoder (bench/kernel-path.ts says how).
 *
 *   node_modules/.bin/node bench/plugin-kernel-throughput.bench.ts
 */
import { measurePath, report } from './kernel-path.ts'

const options = { recordSize: 64, plugins: 1, burst: 65_536, warmBursts: 8, timedBursts: 60, rounds: 3 }
if (!report('kernel → plugin handler', options, await measurePath(options), 1_000_000)) process.exitCode = 1
