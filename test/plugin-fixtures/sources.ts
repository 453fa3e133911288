/** Plugin sources the plugin tests write into their temporary plugins directory. */

/**
 * Counts every gen:events record, checks the numbering for gaps (ctx.state carries the expected
 * next number across reloads) and reports `count`/`gaps` as a gauge every 20 ms.
 */
export function counterPlugin(name = 'counter', version = 1): string {
  return `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: ${JSON.stringify(name)},
  objects: ['gen'],
  setup(ctx) {
    const s = ctx.state as { count?: number; next?: number; gaps?: number }
    s.count ??= 0
    s.gaps ??= 0
    ctx.on('gen:events', (ev) => {
      const seq = ev.seq as number
      if (s.next !== undefined && seq !== s.next) s.gaps! += 1
      s.next = seq + 1
      s.count! += 1
    })
    ctx.every('20ms', () => {
      ctx.emit.metric({ name: 'count', kind: 'gauge', value: s.count!, attributes: { version: ${version}, gaps: s.gaps! } })
    })
  },
})
`
}

/** A plugin whose handler body is `body` (with `ev` and `ctx` in scope). */
export function handlerPlugin(name: string, body: string, extraSetup = ''): string {
  return `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: ${JSON.stringify(name)},
  objects: ['gen'],
  setup(ctx) {
    ${extraSetup}
    ctx.on('gen:events', (ev) => {
      ${body}
    })
  },
})
`
}

/** Latest `count` gauge a counterPlugin reported, with its attributes. */
export function lastCount(metrics: { name: string; value: number; attributes?: Record<string, unknown> }[]) {
  for (let i = metrics.length - 1; i >= 0; i--) if (metrics[i]!.name === 'count') return metrics[i]!
  return undefined
}
