/**
 * Shared by the plugin API's kernel tests: a provider serving the real library (loopgen with a
 * small ring) and test/bpf/fixtures/plugin-api.bpf.c as object `pluginapi`, and plugin sources.
 */
import { join } from 'node:path'
import type { ObjectProvider } from '../../runtime/bus.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { LibraryObject, openLibraryObject } from '../../runtime/library/index.ts'
import { compileFixture, root } from './kernel.ts'

export const decodersPath = join(root, 'bpf/lib/index.types.ts')
/**
 * loopgen's ring, small enough to overflow in one generate() call and to drain in one batch, and
 * large enough for that batch to be read by the drop counter at once (bus.ts reads after 64 KiB).
 */
export const SMALL_RING = 128 * 1024
export const LOOPGEN_RECORD = 8 + 64

const fixture = compileFixture('plugin-api')

/** The real library plus the test fixture as object `pluginapi`, remembering what it opened. */
export function provider(prepare?: (object: LibraryObject) => void): ObjectProvider & { opened: Map<string, LibraryObject> } {
  const opened = new Map<string, LibraryObject>()
  return {
    opened,
    async open(name, settings) {
      let object: LibraryObject
      if (name === 'pluginapi') {
        object = new LibraryObject(name, await ObjectSpec.open(fixture).load(), [], () => {})
        prepare?.(object)
      } else {
        const maxEntries = name === 'loopgen' ? { events: SMALL_RING } : undefined
        object = await openLibraryObject(name, { settings, maxEntries, log: () => {} })
      }
      opened.set(name, object)
      return object
    },
  }
}

export const u32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer)
export const u64 = (n: number) => new Uint8Array(new BigUint64Array([BigInt(n)]).buffer)
export const readU64 = (bytes: Uint8Array | undefined) => (bytes === undefined ? undefined : Number(Buffer.from(bytes).readBigUInt64LE(0)))

/** A plugin whose async setup body is `body`; `u32`, `u64` and `codeOf` are in scope. */
export function plugin(name: string, objects: string[], body: string): string {
  return `import { definePlugin } from 'periscope/plugin'
export const u32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer)
export const u64 = (n: number) => new Uint8Array(new BigUint64Array([BigInt(n)]).buffer)
const codeOf = async (p: Promise<unknown>) => { try { await p; return 'ok' } catch (e) { return (e as { code?: string }).code + ' ' + (e as Error).message } }
export default definePlugin({
  name: '${name}',
  objects: ${JSON.stringify(objects)},
  async setup(ctx) {
    ${body}
  },
})
`
}
