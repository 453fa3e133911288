/** Durations as written in periscope.yaml and `ctx.every`: `250ms`, `10s`, `1m`, `1h`, or milliseconds. */
const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Milliseconds, or undefined when `text` is not a duration. */
export function parseDuration(text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isFinite(text) && text >= 0 ? text : undefined
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text)
  if (match === null) return undefined
  return Number(match[1]) * units[match[2] ?? 'ms']!
}
