/** The admin methods that answer from the runtime's state; subscriptions are in stream.ts. */
import type { Bus } from '../bus.ts'
import type { PluginManager } from '../plugins/manager.ts'

export interface AdminState {
  manager: PluginManager
  bus: Bus
  /** Extra facts for `stats` (privileges...). */
  extraStats?: () => Record<string, unknown>
}

type Method = (state: AdminState, params: Record<string, unknown>) => unknown

// a Map, so that a method named like an Object.prototype member ('constructor') is unknown
export const stateMethods = new Map<string, Method>(Object.entries({
  plugins: ({ manager }) => manager.list(),
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
  reload: ({ manager }, { name }) => {
    if (typeof name !== 'string') throw new Error("reload needs params.name, the plugin's name")
    return manager.reload(name)
  },
} satisfies Record<string, Method>))
