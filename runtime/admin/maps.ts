/**
 * The maps of the objects the runtime has open, and their entries decoded by the generated
 * codecs (bpf/lib/<object>.types.ts `mapCodecs`), for the admin methods `maps` and `dump` that
 * the REPL's `maps()` and `map('<object>:<map>').dump()` call. Only open objects are read: an
 * object nobody holds is not loaded, so it has no maps to read.
 */
import { existsSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { type Bus, splitTopic } from '../bus.ts'

const libraryDir = fileURLToPath(new URL('../../bpf/lib/', import.meta.url))

interface Codec { size: number; decode(view: DataView, offset: number): unknown }
interface ObjectTypes { mapNames: readonly string[]; mapCodecs: Record<string, { key: Codec; value: Codec } | undefined> }

/** The generated types of a library object; undefined for objects that have none (test providers). */
async function typesOf(object: string): Promise<ObjectTypes | undefined> {
  const file = `${libraryDir}${object}.types.ts`
  if (!/^[a-z0-9_]+$/.test(object) || !existsSync(file)) return undefined
  return await import(pathToFileURL(file).href) as ObjectTypes
}

export interface MapRow {
  map: string
  type: string | null
  /** entries now; streams (ring and perf buffers) have none to count */
  entries?: number
}

export async function listMaps(bus: Bus): Promise<MapRow[]> {
  const rows: MapRow[] = []
  for (const object of bus.listObjects()) {
    const names = (await typesOf(object.name))?.mapNames ?? object.streams
    for (const name of names) {
      const topic = `${object.name}:${name}`
      if (object.streams.includes(name)) {
        rows.push({ map: topic, type: 'stream' })
        continue
      }
      const map = bus.map(topic)
      let entries = 0
      for (const _ of map.entries()) entries++
      rows.push({ map: topic, type: map.info?.type ?? null, entries })
    }
  }
  return rows
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')

function decoder(codec: Codec | undefined, size: number): (bytes: Uint8Array) => unknown {
  if (codec === undefined || codec.size !== size) return hex
  return (bytes) => codec.decode(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0)
}

/** Every entry of map `topic` ('<object>:<map>'), decoded; a per-CPU map's value is one per CPU. */
export async function dumpMap(bus: Bus, topic: unknown): Promise<{ key: unknown; value: unknown }[]> {
  if (typeof topic !== 'string') throw new Error("dump needs params.topic, the map as '<object>:<map>' (like 'sched:proc_stats')")
  const { object, member } = splitTopic(topic)
  const open = bus.listObjects().find((o) => o.name === object)
  if (open === undefined) {
    const names = bus.listObjects().map((o) => o.name)
    throw new Error(`object '${object}' is not open: no plugin uses it, so its maps are not loaded; open objects: ${names.join(', ') || 'none'} (load a plugin that uses it, or trace() the events you want)`)
  }
  if (open.streams.includes(member)) throw new Error(`'${topic}' is a stream (a ring or perf buffer), not a map to read: trace() its events, or subscribe to it`)
  const codecs = (await typesOf(object))?.mapCodecs[member]
  const map = bus.map(topic)
  const key = decoder(codecs?.key, map.keySize)
  const value = decoder(codecs?.value, map.valueSize)
  const stride = (map.valueSize + 7) & ~7
  const rows = []
  for (const [k, v] of map.entries()) {
    if (map.info?.perCpu !== true) {
      rows.push({ key: key(k), value: value(v) })
      continue
    }
    const perCpu = []
    for (let at = 0; at + map.valueSize <= v.byteLength; at += stride) perCpu.push(value(v.subarray(at, at + map.valueSize)))
    rows.push({ key: key(k), value: perCpu })
  }
  return rows
}
