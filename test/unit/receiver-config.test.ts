import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseConfigText, pluginSettingsFrom } from '../../runtime/config/index.ts'

test('no receiver block: the shipped plugins keep their own defaults', () => {
  assert.deepEqual(pluginSettingsFrom(parseConfigText('')), {})
})

test('receiver.traces filters, sampling and metrics.red become the http plugin config', () => {
  const config = parseConfigText(`
receiver:
  traces:
    protocols: [http, redis]
    filters:
      - min_duration: 100ms
      - http_status: ">= 400"
      - http_methods: [GET, POST]
    sampling: 10%
  metrics:
    red: false
`)
  assert.deepEqual(pluginSettingsFrom(config), {
    http: {
      enabled: true,
      config: { https: false, min_duration_ms: 100, http_status: '>=400', http_methods: ['GET', 'POST'], sampling_percent: 10, red_metrics: false },
    },
  })
})

test('a protocols list without http or https turns the http plugin off', () => {
  const config = parseConfigText('receiver:\n  traces:\n    protocols: [redis]\n')
  assert.equal(pluginSettingsFrom(config).http?.enabled, false)
})

test('plugins.http wins over the receiver block key by key', () => {
  const config = parseConfigText(`
receiver:
  traces:
    protocols: [https]
    sampling: 50%
plugins:
  http:
    enabled: true
    config:
      sampling_percent: 5
      max_routes: 10
`)
  const http = pluginSettingsFrom(config).http!
  assert.equal(http.enabled, true)
  assert.deepEqual(http.config, { https: true, sampling_percent: 5, max_routes: 10 })
})
