/**
 * A Prometheus scrape endpoint over the same metrics the push path exports. The SDK's
 * PrometheusExporter is itself a MetricReader bound to one MeterProvider, and Periscope has two
 * (see metrics.ts), so this serves `/metrics` with the SDK's PrometheusSerializer over the merged
 * collection instead.
 */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { PrometheusSerializer } from '@opentelemetry/exporter-prometheus'
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics'
import { withoutExponentialHistograms } from './metrics.ts'
import type { TelemetryLog } from './log.ts'

// An ES import of node:http builds its namespace, which reads http's lazy WebSocket and
// MessageEvent exports and so loads undici, http2 and tls: megabytes this server never uses.
const { createServer } = process.getBuiltinModule('node:http')

export interface PrometheusEndpoint {
  url: string
  close(): Promise<void>
}

export async function servePrometheus(
  host: string,
  port: number,
  collect: () => Promise<ResourceMetrics>,
  log: TelemetryLog,
): Promise<PrometheusEndpoint | undefined> {
  // the serializer's package is loaded by the first scrape: a runtime nobody scrapes never pays for it
  let serializer: Promise<PrometheusSerializer> | undefined
  const serialize = async (metrics: ResourceMetrics): Promise<string> => {
    serializer ??= import('@opentelemetry/exporter-prometheus').then(({ PrometheusSerializer }) => new PrometheusSerializer('', false))
    return (await serializer).serialize(withoutExponentialHistograms(metrics))
  }
  const server: Server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('Periscope serves Prometheus metrics at GET /metrics\n')
      return
    }
    collect()
      .then(serialize)
      .then((text) => {
        response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
        response.end(text)
      })
      .catch((error: unknown) => {
        log('error', `prometheus scrape failed: ${String(error)}`)
        response.writeHead(500, { 'content-type': 'text/plain' }).end(`collection failed: ${String(error)}\n`)
      })
  })
  const listening = await new Promise<boolean>((resolve) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const fix =
        error.code === 'EADDRINUSE'
          ? 'another process uses the port; set exporter.prometheus.port to a free port, or exporter.prometheus.enabled: false'
          : 'check exporter.prometheus.host and port'
      log('error', `prometheus endpoint: cannot listen on ${host}:${port}: ${error.code ?? error.message}; ${fix}. Metrics are still exported`)
      resolve(false)
    })
    server.listen(port, host, () => resolve(true))
  })
  if (!listening) return undefined
  // scrapes must not keep a finished process alive
  server.unref()
  const address = server.address() as AddressInfo
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${shownHost}:${address.port}/metrics`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
