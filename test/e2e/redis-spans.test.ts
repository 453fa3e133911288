// Redis client spans end to end: Debian's redis-server 7.0 (started by this test on a free port,
// no persistence; a second one with a password, a third over TLS only), driven by the real redis-cli (single commands,
// sessions on one connection read from stdin, --pipe) and redis-benchmark (-P 16), traced by
// `periscope run` with only the shipped redis plugin, exported to a real Collector. Every command
// a client sent must be exactly one CLIENT span of that client's pid, with the semantic-convention
// attributes; pipelines give exactly their count of spans; error replies are errors with their
// prefix; queued commands take their result from EXEC; no value or password the test used may
// appear in anything Periscope or the Collector wrote.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { attributesOf, collectorSpans, flatten, startCollector, type Collector, type CollectorSpan } from '../peers/otelcol.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { REDIS_CLI, startRedis, type ClientRun, type Redis } from '../peers/redis.ts'
import { redisCommandsByFirstKey } from '../../runtime/protocols/redis-commands.ts'
import { pollUntil } from '../peers/poll.ts'

type Json = Record<string, unknown>

/** Secrets this test puts on the wire: none may be exported. */
const secret = (what: string): string => `${what}-${randomBytes(6).toString('hex')}`
const PASSWORD = secret('redis-password')
const WRONG_PASSWORD = secret('redis-wrong-password')
const VALUE = secret('redis-value')
const TX_VALUE = secret('redis-tx-value')
const PIPE_VALUE = secret('redis-pipe-value')
const ECHOED_ARGUMENT = secret('redis-echoed-argument')
const TLS_VALUE = secret('redis-tls-value')
/** A key exported by default, and by no run with export_keys off. */
const PRIVATE_KEY = secret('private-key-name')

/** redis-benchmark: requests of each test, pipelined 16 at a time over 4 connections. */
const BENCH_REQUESTS = 20_000
/** redis-cli --pipe: SETs in one stream. */
const PIPE_COMMANDS = 3_000

const pidOf = (span: CollectorSpan): number => Number(span.attributes['process.pid'])

describe('Redis spans from redis-cli and redis-benchmark', { timeout: 600_000 }, () => {
  let collector: Collector
  let redis: Redis
  let secured: Redis
  let overTls: Redis
  let periscope: Periscope
  /** SET spans to `redis` from every client of this test but redis-benchmark, for the histogram's count. */
  let setSpans = 0
  /** redis-benchmark's SETs the plugin saw: all of them when it counted no drop (undefined otherwise). */
  let benchmarkSets: number | undefined

  before(async () => {
    collector = await startCollector()
    redis = await startRedis()
    secured = await startRedis({ password: PASSWORD })
    overTls = await startRedis({ tls: true })
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint,
      shipped: ['redis'],
      ready: /running 1 of \d+ plugins/,
      // redis-benchmark makes tens of thousands of spans in a second: room to queue them, and batches the Collector takes fast
      config: { exporter: { queue: { spans: 100_000 }, batch: { maxSize: 4096 } } },
    })
    await periscope.waitForOutput(/tracing Redis clients/, 'the redis plugin to start')
  })

  after(async () => {
    await periscope?.stop()
    await redis?.stop()
    await secured?.stop()
    await overTls?.stop()
    await collector?.stop()
  })

  /** Waits until `pid` has at least `count` spans, then checks it has exactly that many; in start order. */
  async function spansOf(run: ClientRun, count: number, timeoutMs = 60_000): Promise<CollectorSpan[]> {
    let found: CollectorSpan[] = []
    await collector.waitFor('traces', (lines) => (found = collectorSpans(lines).filter((s) => pidOf(s) === run.pid)).length >= count, timeoutMs).catch((error: Error) => {
      throw new Error(`${error.message}\n${found.length} span(s) of pid ${run.pid}, want ${count}: ${JSON.stringify(found.map((s) => s.name))}\n` +
        `client stdout: ${run.stdout.slice(0, 2000)}\nperiscope output:\n${periscope.output().slice(-3000)}`)
    })
    assert.equal(found.length, count, `spans of pid ${run.pid}: ${JSON.stringify(found.map((s) => s.name))}`)
    for (const span of found) {
      assert.equal(span.kind, 'client')
      assert.equal(span.attributes['db.system.name'], 'redis')
      assert.equal(Number(span.resource['process.pid']), run.pid)
    }
    return found.sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0))
  }

  /** name, query text, namespace, status code and error, one line a span. */
  const lines = (spans: CollectorSpan[]): string[] => spans.map((s) =>
    [s.name, `"${s.attributes['db.query.text']}"`, `db${s.attributes['db.namespace'] ?? '?'}`, s.error ? `error ${s.attributes['error.type']} ${s.attributes['db.response.status_code']}` : 'ok'].join(' '))

  it('SET, GET and INCR from single redis-cli runs: one span each, with the semantic-convention attributes', async () => {
    const set = await redis.cli(['SET', 'greeting', VALUE])
    assert.equal(set.stdout, 'OK\n')
    const [span] = await spansOf(set, 1)
    assert.equal(span!.name, 'SET')
    assert.deepEqual(pick(span!, ['db.system.name', 'db.operation.name', 'db.query.text', 'db.namespace', 'server.address', 'server.port', 'network.peer.address', 'network.peer.port', 'process.pid', 'thread.id']), {
      'db.system.name': 'redis', 'db.operation.name': 'SET', 'db.query.text': 'SET greeting ?', 'db.namespace': '0',
      'server.address': '127.0.0.1', 'server.port': redis.port, 'network.peer.address': '127.0.0.1', 'network.peer.port': redis.port, 'process.pid': set.pid,
      // redis-cli sends from its one thread, whose id is the pid
      'thread.id': set.pid,
    })
    assert.equal(span!.error, false)
    assert.ok(span!.endNs > span!.startNs)
    setSpans++
    const get = await redis.cli(['GET', 'greeting'])
    assert.equal(get.stdout, `${VALUE}\n`)
    assert.deepEqual(lines(await spansOf(get, 1)), ['GET "GET greeting" db0 ok'])
    for (const expected of ['1', '2']) {
      const incr = await redis.cli(['INCR', 'counter'])
      assert.equal(incr.stdout, `${expected}\n`)
      assert.deepEqual(lines(await spansOf(incr, 1)), ['INCR "INCR counter" db0 ok'])
    }
  })

  it('a session on one connection: SELECT sets db.namespace for the commands after it', async () => {
    const run = await redis.cli([], { input: `SELECT 3\nSET session:key ${VALUE}\nGET session:key\nCLIENT SETNAME periscope-test\nDEL session:key\n` })
    assert.equal(run.stdout, `OK\nOK\n${VALUE}\nOK\n1\n`)
    // redis-cli reading stdin first asks the server for its command docs
    assert.deepEqual(lines(await spansOf(run, 6)), [
      'COMMAND DOCS "COMMAND DOCS" db0 ok',
      'SELECT "SELECT ?" db0 ok',
      'SET "SET session:key ?" db3 ok',
      'GET "GET session:key" db3 ok',
      'CLIENT SETNAME "CLIENT SETNAME ?" db3 ok',
      'DEL "DEL session:key" db3 ok',
    ])
    setSpans++
  })

  it('error replies: WRONGTYPE, an unknown command whose error echoes its argument, a wrong arity', async () => {
    await redis.cli(['RPUSH', 'a-list', 'x'])
    const run = await redis.cli([], { input: `GET a-list\nNOSUCHCOMMAND ${ECHOED_ARGUMENT}\nGET\n` })
    assert.match(run.stdout, /WRONGTYPE/)
    assert.ok(run.stdout.includes(ECHOED_ARGUMENT), 'the server echoed the argument in its error')
    const spans = await spansOf(run, 4)
    assert.deepEqual(lines(spans).slice(1), [
      'GET "GET a-list" db0 error WRONGTYPE WRONGTYPE',
      'NOSUCHCOMMAND "NOSUCHCOMMAND ?" db0 error ERR ERR',
      'GET "GET" db0 error ERR ERR',
    ])
    assert.deepEqual(spans.slice(1).map((s) => s.statusMessage), [
      'WRONGTYPE Operation against a key holding the wrong kind of value',
      'ERR unknown command',
      'ERR wrong number of arguments for',
    ])
  })

  it('a command whose connection closes before its reply: its span ends at the close, as connection_closed, without waiting for the connection to be forgotten', async () => {
    // a client that closes its socket with close(), after the server killed the connection:
    // Python's socket, as redis-py uses it, sending BLPOP
    const client = spawn('python3', ['-c', [
      'import socket, sys',
      `s = socket.create_connection(("127.0.0.1", ${redis.port}))`,
      "s.sendall(b'*3\\r\\n$5\\r\\nBLPOP\\r\\n$22\\r\\nperiscope:never-pushed\\r\\n$1\\r\\n0\\r\\n')",
      'print(repr(s.recv(100)), flush=True)',
      's.close()',
    ].join('\n')], { stdio: ['ignore', 'pipe', 'inherit'] })
    let stdout = ''
    client.stdout.setEncoding('utf8').on('data', (text: string) => { stdout += text })
    const exited = once(client, 'close')
    try {
      let id: string | undefined
      await pollUntil(async () => {
        id = /^id=(\d+) .*cmd=blpop/m.exec((await redis.cli(['CLIENT', 'LIST'])).stdout)?.[1]
        return id !== undefined
      }, { what: 'the client to block in BLPOP', timeoutMs: 30_000 })
      assert.equal((await redis.cli(['CLIENT', 'KILL', 'ID', id!])).stdout, '1\n')
      assert.deepEqual(await exited, [0, null])
    } finally {
      client.kill()
    }
    // the server closed without a reply
    assert.equal(stdout, "b''\n")
    const [span] = await spansOf({ pid: client.pid!, code: 0, stdout, stderr: '' }, 1, 30_000)
    assert.deepEqual(lines([span!]), ['BLPOP "BLPOP periscope:never-pushed ?" db0 error connection_closed undefined'])
    assert.equal(span!.statusMessage, 'the connection closed before the reply')
  })

  it('redis-cli killed while its BLPOP waits (the kernel closes its socket at the exit, no close() call): the span ends then, as connection_closed', async () => {
    const key = `periscope:never-pushed-${randomBytes(4).toString('hex')}`
    const cli = spawn(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(redis.port), 'BLPOP', key, '0'], { stdio: 'ignore' })
    const exited = once(cli, 'exit')
    try {
      await pollUntil(async () => (await redis.cli(['CLIENT', 'LIST'])).stdout.includes('cmd=blpop'), { what: 'redis-cli to block in BLPOP', timeoutMs: 30_000 })
      cli.kill('SIGKILL')
      assert.deepEqual(await exited, [null, 'SIGKILL'])
    } finally {
      cli.kill('SIGKILL')
    }
    // before, the connection ended only when the kernel's table or the plugin's forgot it
    const [span] = await spansOf({ pid: cli.pid!, code: null, stdout: '', stderr: '' }, 1, 10_000)
    assert.deepEqual(lines([span!]), [`BLPOP "BLPOP ${key} ?" db0 error connection_closed undefined`])
    assert.equal(span!.statusMessage, 'the connection closed before the reply')
  })

  it('MULTI/EXEC: every queued command is one span with its result from EXEC; DISCARD', async () => {
    const run = await redis.cli([], { input: `MULTI\nSET tx:key ${TX_VALUE}\nINCR tx:counter\nLPUSH tx:key x\nEXEC\nMULTI\nSET tx:other 1\nDISCARD\n` })
    assert.match(run.stdout, /QUEUED[\s\S]*WRONGTYPE/)
    assert.deepEqual(lines(await spansOf(run, 9)), [
      'COMMAND DOCS "COMMAND DOCS" db0 ok',
      'MULTI "MULTI" db0 ok',
      'SET "SET tx:key ?" db0 ok',
      'INCR "INCR tx:counter" db0 ok',
      'LPUSH "LPUSH tx:key ?" db0 error WRONGTYPE WRONGTYPE',
      'EXEC "EXEC" db0 ok',
      'MULTI "MULTI" db0 ok',
      'SET "SET tx:other ?" db0 ok',
      'DISCARD "DISCARD" db0 ok',
    ])
    setSpans += 2
  })

  it('AUTH with a password: AUTH and HELLO spans carry none of their arguments', async () => {
    const run = await secured.cli([], { auth: false, input: `GET k\nAUTH ${WRONG_PASSWORD}\nAUTH ${PASSWORD}\nSET k ${VALUE}\nHELLO 3 AUTH default ${PASSWORD}\n` })
    assert.match(run.stdout, /WRONGPASS/)
    const spans = await spansOf(run, 7)
    assert.deepEqual(lines(spans), [
      'COMMAND DOCS "COMMAND DOCS" db0 error NOAUTH NOAUTH',
      'COMMAND "COMMAND" db0 error NOAUTH NOAUTH',
      'GET "GET k" db0 error NOAUTH NOAUTH',
      'AUTH "AUTH ?" db0 error WRONGPASS WRONGPASS',
      'AUTH "AUTH ?" db0 ok',
      'SET "SET k ?" db0 ok',
      'HELLO "HELLO ? ? ? ?" db0 ok',
    ])
    assert.ok(spans.every((s) => s.attributes['server.port'] === secured.port))
    // redis-cli -a style: the password from REDISCLI_AUTH, sent as AUTH before the command
    const withAuth = await secured.cli(['GET', 'k'])
    assert.equal(withAuth.stdout, `${VALUE}\n`)
    assert.deepEqual(lines(await spansOf(withAuth, 2)), ['AUTH "AUTH ?" db0 ok', 'GET "GET k" db0 ok'])
  })

  it(`redis-cli --pipe: ${PIPE_COMMANDS} SETs in one stream are ${PIPE_COMMANDS} spans`, async () => {
    let input = ''
    for (let i = 0; i < PIPE_COMMANDS; i++) input += `*3\r\n$3\r\nSET\r\n$${`pipe:${i}`.length}\r\npipe:${i}\r\n$${PIPE_VALUE.length}\r\n${PIPE_VALUE}\r\n`
    const run = await redis.cli(['--pipe'], { input })
    assert.match(run.stdout, new RegExp(`errors: 0, replies: ${PIPE_COMMANDS}`))
    // redis-cli ends its stream with an ECHO of random bytes, whose reply tells it all came back
    const spans = await spansOf(run, PIPE_COMMANDS + 1)
    const sets = spans.filter((s) => s.name === 'SET')
    assert.equal(sets.length, PIPE_COMMANDS)
    assert.deepEqual(new Set(sets.map((s) => s.attributes['db.query.text'])).size, PIPE_COMMANDS, 'each SET with its own key')
    assert.ok(sets.every((s) => !s.error))
    assert.deepEqual(spans.filter((s) => s.name !== 'SET').map((s) => s.name), ['ECHO'])
    setSpans += PIPE_COMMANDS
  })

  it(`redis-benchmark -P 16 -n ${BENCH_REQUESTS} -t set,get: exactly that many SET and GET spans, less the drops Periscope counted`, async (t) => {
    const before = await drops()
    const run = await redis.benchmark({ tests: ['set', 'get'], requests: BENCH_REQUESTS, pipeline: 16, clients: 4 })
    assert.deepEqual(run.rows.map((row) => row.test), ['SET', 'GET'])
    // redis-benchmark first reads the server's save and appendonly settings on a connection of its own
    const wanted = 2 * BENCH_REQUESTS + 2
    let spans: CollectorSpan[] = []
    let dropped = { plugin: 0, exporter: 0 }
    await pollUntil(async () => {
      spans = collectorSpans(await collector.read('traces')).filter((s) => pidOf(s) === run.pid)
      const now = await drops()
      dropped = { plugin: now.plugin - before.plugin, exporter: now.exporter - before.exporter }
      return spans.length + dropped.plugin + dropped.exporter >= wanted
    }, {
      what: `${wanted} spans of redis-benchmark or counted drops`,
      timeoutMs: 120_000,
      // each check reads the whole traces file and the metrics
      intervalMs: 500,
      details: () => `${spans.length} spans and ${JSON.stringify(dropped)} counted drops so far\n${periscope.output().slice(-3000)}`,
    })
    const count = (name: string): number => spans.filter((s) => s.name === name).length
    assert.ok(spans.every((s) => ['SET', 'GET', 'CONFIG GET'].includes(s.name) && !s.error))
    // the drop counters are the host's: other Redis traffic may add to them, never take away
    const total = dropped.plugin + dropped.exporter
    t.diagnostic(`redis-benchmark: ${count('SET')} SET, ${count('GET')} GET, ${count('CONFIG GET')} CONFIG GET spans; counted drops ${JSON.stringify(dropped)}`)
    if (total === 0) assert.deepEqual([count('SET'), count('GET'), count('CONFIG GET')], [BENCH_REQUESTS, BENCH_REQUESTS, 2])
    else assert.ok(spans.length <= wanted && spans.length + total >= wanted, `${spans.length} spans, ${JSON.stringify(dropped)} drops`)
    assert.ok(spans.filter((s) => s.name === 'SET').every((s) => s.attributes['db.query.text'] === 'SET key:__rand_int__ ?'))
    // the histogram counts what the plugin saw, exported or not
    benchmarkSets = dropped.plugin === 0 ? BENCH_REQUESTS : undefined
  })

  it('db.client.operation.duration counts every SET to the server', async () => {
    let last = 0
    await collector.waitFor('metrics', (metrics) => (last = histogramCount(metrics, redis.port, 'SET')) >= setSpans + (benchmarkSets ?? 0), 60_000).catch((error: Error) => {
      throw new Error(`${error.message}\nhistogram count ${last}, SET spans ${setSpans} + ${benchmarkSets} from redis-benchmark`)
    })
    if (benchmarkSets !== undefined) assert.equal(last, setSpans + benchmarkSets)
  })

  it('the plugin reports no parse error for any of this traffic', async () => {
    let errors: Record<string, number> = {}
    await collector.waitFor('metrics', (metrics) => Object.keys(errors = latestGauges(metrics, 'periscope.redis.parse_errors', 'reason')).length > 0, 60_000)
    assert.deepEqual(Object.entries(errors).filter(([, n]) => n !== 0), [], `parse errors: ${JSON.stringify(errors)}`)
    assert.deepEqual(Object.keys(errors).sort(), ['bulk-end', 'bulk-expected', 'inline-too-long', 'position', 'reply-depth', 'reply-header', 'reply-type', 'request-header'])
  })

  it('the command table matches the running server\'s COMMAND reply', async () => {
    const run = await redis.cli(['--json', 'COMMAND'])
    assert.equal(run.code, 0, run.stderr)
    const expected: Record<number, string[]> = {}
    for (const entry of JSON.parse(run.stdout) as [string, number, string[], number, number, number, string[], string[], unknown, [string, number, string[], number][]][]) {
      (expected[entry[3]] ??= []).push(entry[0].toUpperCase())
      for (const sub of entry[9]) (expected[sub[3]] ??= []).push(sub[0].toUpperCase())
    }
    const table = Object.fromEntries(Object.entries(redisCommandsByFirstKey).map(([key, names]) => [key, names.split(' ').sort()]))
    assert.deepEqual(table, Object.fromEntries(Object.entries(expected).map(([key, names]) => [key, names.sort()])))
  })

  it('over TLS: the same spans, from the plaintext the OpenSSL uprobes read', async () => {
    const set = await overTls.cli(['SET', 'tls:key', TLS_VALUE])
    assert.equal(set.stdout, 'OK\n', set.stderr)
    assert.deepEqual(lines(await spansOf(set, 1)), ['SET "SET tls:key ?" db0 ok'])
    const get = await overTls.cli(['GET', 'tls:key'])
    assert.equal(get.stdout, `${TLS_VALUE}\n`)
    const [span] = await spansOf(get, 1)
    assert.deepEqual(lines([span!]), ['GET "GET tls:key" db0 ok'])
    assert.equal(span!.attributes['server.port'], overTls.port)
  })

  it('no password or value the test used appears in the data directory or the Collector output', async () => {
    for (const text of [PASSWORD, WRONG_PASSWORD, VALUE, TX_VALUE, PIPE_VALUE, ECHOED_ARGUMENT, TLS_VALUE]) {
      for (const dir of [periscope.dir, collector.outDir]) {
        const found = await grep(text, dir)
        assert.equal(found, '', `${text} found in ${dir}:\n${found}`)
      }
    }
    // the values did reach the server: the grep is not vacuous
    assert.equal((await redis.cli(['GET', 'pipe:0'])).stdout, `${PIPE_VALUE}\n`)
    assert.equal((await secured.cli(['GET', 'k'])).stdout, `${VALUE}\n`)
  })

  it('with export_keys off, no key is exported either', async () => {
    await periscope.stop()
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint,
      shipped: ['redis'],
      ready: /running 1 of \d+ plugins/,
      config: { plugins: { redis: { config: { export_keys: false } } } },
    })
    await periscope.waitForOutput(/tracing Redis clients/, 'the redis plugin to start')
    const run = await redis.cli(['SET', PRIVATE_KEY, VALUE])
    assert.equal(run.stdout, 'OK\n')
    assert.deepEqual(lines(await spansOf(run, 1)), ['SET "SET ? ?" db0 ok'])
    for (const dir of [periscope.dir, collector.outDir]) assert.equal(await grep(PRIVATE_KEY, dir), '', `${PRIVATE_KEY} found in ${dir}`)
  })

  /**
   * Spans Periscope counted as not made or not exported, over the host: commands the plugin could
   * not pair (lost, unmatched, overflowed) or whose records it dropped, and spans the exporter dropped.
   */
  async function drops(): Promise<{ plugin: number; exporter: number }> {
    const metrics = await collector.read('metrics')
    const plugin = ['periscope.redis.lost_commands', 'periscope.redis.unmatched_replies', 'periscope.redis.queue_overflows']
      .reduce((sum, name) => sum + latestPoints(metrics, name).reduce((n, p) => n + p.value, 0), 0) +
      latestPoints(metrics, 'periscope.plugin.events.dropped').filter((p) => p.attributes['periscope.plugin'] === 'redis').reduce((n, p) => n + p.value, 0)
    const exporter = latestPoints(metrics, 'periscope.exporter.dropped').filter((p) => p.attributes.signal === 'traces').reduce((n, p) => n + p.value, 0)
    return { plugin, exporter }
  }
})

function pick(span: CollectorSpan, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, span.attributes[k]]))
}

/** Files under `dir` containing `text` (grep -r), '' when none. */
async function grep(text: string, dir: string): Promise<string> {
  return promisify(execFile)('grep', ['-r', '-a', '-l', '-F', text, dir]).then(({ stdout }) => stdout, (error: { code?: number; stdout?: string }) => {
    if (error.code === 1) return ''
    throw error
  })
}

/** The db.client.operation.duration count of this server and operation, over its series (cumulative: the latest of each). */
function histogramCount(lines: Json[], port: number, operation: string): number {
  const bySeries = new Map<string, number>()
  for (const { item } of flatten('metrics', lines)) {
    if (item.name !== 'db.client.operation.duration') continue
    for (const point of ((item.histogram as Json | undefined)?.dataPoints as Json[] | undefined) ?? []) {
      const attributes = attributesOf(point.attributes)
      if (attributes['server.port'] !== port || attributes['db.operation.name'] !== operation || attributes['db.system.name'] !== 'redis') continue
      bySeries.set(JSON.stringify(attributes), Number(point.count))
    }
  }
  return [...bySeries.values()].reduce((sum, n) => sum + n, 0)
}

/** The last value of a gauge per value of its `key` attribute. */
function latestGauges(lines: Json[], name: string, key: string): Record<string, number> {
  return Object.fromEntries(latestPoints(lines, name).map((p) => [String(p.attributes[key]), p.value]))
}

/** The last point of a gauge or sum per attribute set. */
function latestPoints(lines: Json[], name: string): { attributes: Record<string, unknown>; value: number }[] {
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
