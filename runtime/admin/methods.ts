/** The admin methods that answer from the runtime's state; subscriptions are in stream.ts. */
import type { Bus } from '../bus.ts'
import type { PluginManager } from '../plugins/manager.ts'
import { dumpMap, listMaps } from './maps.ts'

export interface AdminState {
  manager: PluginManager
  bus: Bus
  /** Extra facts for `stats` (privileges...). */
  extraStats?: () => Record<string, unknown>
  /** The directories whose plugin files the runtime loads and reloads as they change. */
  pluginDirs?: readonly string[]
}

type Method = (state: AdminState, params: Record<string, unknown>) => unknown

// a Map, so that a method named like an Object.prototype member ('constructor') is unknown
export const stateMethods = new Map<string, Method>(Object.entries({
  plugins: ({ manager }) => manager.list(),
  /** Where the runtime watches for plugin files: one written there is loaded, and reloaded on change. */
  pluginDirs: ({ pluginDirs }) => pluginDirs ?? [],
  objects: ({ bus }) => bus.listObjects().map(({ links: _links, ...rest }) => rest),
  /** Ring and perf buffer topics with their listeners and counters. */
  streams: ({ bus }) => bus.listStreams(),
  links: ({ bus }) => bus.listObjects().flatMap((o) => o.links.map((link) => ({ object: o.name, ...link }))),
  stats: ({ manager, bus, extraStats }) => ({
    plugins: manager.list().map((p) => ({ name: p.name, status: p.status, ...p.stats })),
    objects: bus.listObjects().map((o) => ({ name: o.name, ...o.stats })),
    streams: bus.listStreams(),
    process: { rssBytes: process.memoryUsage.rss(), ...extraStats?.() },
  }),
  /** The maps of the open objects: streams, and the others with their entry counts. */
  maps: ({ bus }) => listMaps(bus),
  dump: ({ bus }, { topic }) => dumpMap(bus, topic),
  reload: ({ manager }, { name }) => {
    if (typeof name !== 'string') throw new Error("reload needs params.name, the plugin's name")
    return manager.reload(name)
  },
  /** Loads (or reloads) the plugin in params.file, an absolute path as the runtime sees it. */
  load: async ({ manager }, { file }) => {
    if (typeof file !== 'string' || !file.startsWith('/')) throw new Error("load needs params.file, the plugin file's absolute path")
    const host = await manager.add(file)
    return manager.list().find((p) => p.file === host.file)
  },
} satisfies Record<string, Method>))
