/**
 * What the HTTP/2 end-to-end tests (grpc-node-spans, http2-nginx, http2-late) share: reading the
 * spans and self-metrics Periscope exported to the test Collector, and waiting for the OpenSSL
 * uprobes on a binary.
 */
import assert from 'node:assert/strict'
import { realpathSync } from 'node:fs'
import { join } from 'node:path'
import { connectAdmin } from '../../runtime/admin/client.ts'
import { attributesOf, collectorSpans, flatten, type Collector, type CollectorSpan } from '../peers/otelcol.ts'
import type { Periscope } from '../peers/periscope.ts'
import { pollUntil } from '../peers/poll.ts'

type Json = Record<string, unknown>

export const pidOf = (span: CollectorSpan): number => Number(span.attributes['process.pid'])

export const byStart = (a: CollectorSpan, b: CollectorSpan): number => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0)

/** Span summaries for failure messages. */
export function describeSpans(spans: CollectorSpan[]): string {
  return spans.map((s) => `${s.kind} ${s.name} pid ${pidOf(s)} ${JSON.stringify(s.attributes)} ${s.error ? `error "${s.statusMessage}"` : 'ok'}`).join('\n')
}

/**
 * Waits until `count` spans of `kind` from `pid` are exported, then checks there are exactly that
 * many; in start order. `settleMs` more are awaited after that, for a span that would come late.
 */
export async function spansOf(collector: Collector, periscope: Periscope, pid: number, kind: 'client' | 'server', count: number, timeoutMs = 60_000): Promise<CollectorSpan[]> {
  let found: CollectorSpan[] = []
  const read = async (): Promise<CollectorSpan[]> => (found = collectorSpans(await collector.read('traces')).filter((s) => pidOf(s) === pid && s.kind === kind))
  await pollUntil(async () => (await read()).length >= count, {
    what: `${count} ${kind} span(s) of pid ${pid}`,
    timeoutMs,
    intervalMs: 200,
    details: () => `${found.length} so far:\n${describeSpans(found)}\nperiscope output:\n${periscope.output().slice(-3000)}`,
  })
  assert.equal(found.length, count, `${kind} spans of pid ${pid}:\n${describeSpans(found)}`)
  for (const span of found) assert.equal(Number(span.resource['process.pid']), pid, 'the span belongs to the process it names')
  return found.sort(byStart)
}

/** Every span exported so far of these pids. */
export async function allSpansOf(collector: Collector, pids: number[]): Promise<CollectorSpan[]> {
  return collectorSpans(await collector.read('traces')).filter((s) => pids.includes(pidOf(s))).sort(byStart)
}

/** The last point of each series of a gauge or sum. */
export function latestPoints(lines: Json[], name: string): { attributes: Record<string, unknown>; value: number }[] {
  const out = new Map<string, { attributes: Record<string, unknown>; value: number }>()
  for (const { item } of flatten('metrics', lines)) {
    if (item.name !== name) continue
    const data = (item.gauge ?? item.sum) as Json | undefined
    for (const point of (data?.dataPoints as Json[] | undefined) ?? []) {
      const attributes = attributesOf(point.attributes)
      out.set(JSON.stringify(attributes), { attributes, value: Number(point.asInt ?? point.asDouble) })
    }
  }
  return [...out.values()]
}

/** A histogram's count over the series whose attributes include `match` (cumulative: each series' latest). */
export function histogramCount(lines: Json[], name: string, match: Record<string, unknown>): number {
  const bySeries = new Map<string, number>()
  for (const { item } of flatten('metrics', lines)) {
    if (item.name !== name) continue
    for (const point of ((item.histogram as Json | undefined)?.dataPoints as Json[] | undefined) ?? []) {
      const attributes = attributesOf(point.attributes)
      if (Object.entries(match).every(([key, value]) => attributes[key] === value)) bySeries.set(JSON.stringify(attributes), Number(point.count))
    }
  }
  return [...bySeries.values()].reduce((sum, n) => sum + n, 0)
}

/** The sockdata uprobe links now, as the admin socket lists them (`uprobe_multi /path:SSL_write`). */
export async function sockdataUprobes(periscope: Periscope): Promise<string[]> {
  const admin = await connectAdmin(join(periscope.dir, 'admin.sock'))
  try {
    const links = await admin.request<{ object: string; attach: string }[]>('links')
    return links.filter((l) => l.object === 'sockdata').map((l) => l.attach)
  } finally {
    admin.close()
  }
}

/** Waits until the OpenSSL uprobes are on `binary` (attached in the background once a process runs it). */
export async function waitForOpenSslUprobes(periscope: Periscope, binary: string): Promise<void> {
  let links: string[] = []
  // a link is listed with the path of whoever attached it first: the one a process was started
  // with (an exec), or the kernel's (the start-up scan), which has symbolic links resolved
  const paths = [binary, realpathSync(binary)]
  const has = (symbol: string): boolean => links.some((l) => paths.some((path) => l.endsWith(`${path}:${symbol}`)))
  await pollUntil(async () => (links = await sockdataUprobes(periscope), has('SSL_write') && has('SSL_read')), {
    what: `the OpenSSL uprobes on ${binary}`,
    timeoutMs: 60_000,
    intervalMs: 200,
    details: () => `sockdata links: ${JSON.stringify(links)}\nperiscope output:\n${periscope.output().slice(-3000)}`,
  })
}
