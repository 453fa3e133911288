/**
 * Properties of the Redis parser (runtime/protocols/redis.ts), checked with fast-check on
 * generated conversations: commands (known and unknown, any case, binary values) answered by any
 * RESP2/RESP3 value (nested aggregates, maps, attributes, streamed strings and aggregates, errors,
 * pushes in between). Valid streams cut anywhere give back exactly the modelled commands; cut to a
 * capture size, every exchange that fits is still exact; started mid-stream, or after garbage and
 * a loss, the parser is back in step with the clean exchanges that follow; arbitrary bytes never
 * throw and never grow the queue past its bound. A failure prints the seed and the shrunk case.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { RedisParser } from '../../runtime/protocols/redis.ts'
import { feed, type FeedRecord, type Reported } from './redis-feed.ts'

const runs = Number(process.env.REDIS_FUZZ_RUNS ?? 300)

interface ModelCommand {
  /** The words as sent: the name (and subcommand), then arguments. */
  args: string[]
  /** What the parser should report. */
  name: string
  key: string | undefined
  arguments: number
  reply: string
  errorPrefix: string | undefined
}

/** Latin-1 text of bytes, the way records carry them. */
const text = (bytes: Uint8Array): string => String.fromCharCode(...bytes)
const anyBytes = (maxLength: number) => fc.uint8Array({ maxLength }).map(text)
/** Bytes with no CR or LF: what a value may hold when a test needs every LF to end a line. */
const lineBytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((b) => text(b.map((c) => (c === 10 || c === 13 ? 32 : c))))
const word = fc.stringMatching(/^[a-z][a-z0-9:_-]{0,11}$/)
const caseOf = (name: string) => fc.constantFrom(name, name.toLowerCase(), name[0] + name.slice(1).toLowerCase())

/** A command of the pool: keyed ones report their first argument, the others no key. */
function commandArb(value: fc.Arbitrary<string>): fc.Arbitrary<Omit<ModelCommand, 'reply' | 'errorPrefix'>> {
  const keyed = (name: string, values: number) => fc.tuple(caseOf(name), word, fc.array(value, { minLength: values, maxLength: values + 2 }))
    .map(([sent, key, rest]) => ({ args: [sent, key, ...rest], name: sent, key, arguments: 1 + rest.length }))
  const plain = (name: string, max: number) => fc.tuple(caseOf(name), fc.array(value, { maxLength: max }))
    .map(([sent, rest]) => ({ args: [sent, ...rest], name: sent, key: undefined, arguments: rest.length }))
  return fc.oneof(
    keyed('GET', 0), keyed('SET', 1), keyed('INCR', 0), keyed('DEL', 0), keyed('HSET', 2), keyed('LPUSH', 1),
    plain('PING', 1), plain('ECHO', 1), plain('FOOBAR', 2),
    fc.tuple(fc.constantFrom('CLIENT', 'client'), value).map(([client, name]) => {
      const sub = client === 'CLIENT' ? 'SETNAME' : 'setname'
      return { args: [client, sub, name], name: `${client} ${sub}`, key: undefined, arguments: 1 }
    }),
  )
}

function resp(args: string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${arg.length}\r\n${arg}\r\n`).join('')}`
}

/** Any RESP2/RESP3 value that is not an error, to `depth` levels of aggregates. */
function valueArb(value: fc.Arbitrary<string>, line: fc.Arbitrary<string>, depth: number): fc.Arbitrary<string> {
  const scalars = [
    line.map((s) => `+${s}\r\n`),
    fc.integer().map((n) => `:${n}\r\n`),
    value.map((s) => `$${s.length}\r\n${s}\r\n`),
    fc.constant('$-1\r\n'), fc.constant('*-1\r\n'), fc.constant('_\r\n'),
    fc.constantFrom('#t\r\n', '#f\r\n', ',3.14\r\n', ',-inf\r\n', '(3492890328409238509324850943850943825024385\r\n'),
    value.map((s) => `=${s.length + 4}\r\ntxt:${s}\r\n`),
    fc.array(value, { maxLength: 3 }).map((parts) => `$?\r\n${parts.filter((p) => p.length > 0).map((p) => `;${p.length}\r\n${p}\r\n`).join('')};0\r\n`),
  ]
  if (depth === 0) return fc.oneof(...scalars)
  const inner = valueArb(value, line, depth - 1)
  const elements = fc.array(inner, { maxLength: 4 })
  return fc.oneof(
    ...scalars,
    elements.map((e) => `*${e.length}\r\n${e.join('')}`),
    elements.map((e) => `~${e.length}\r\n${e.join('')}`),
    elements.map((e) => `*?\r\n${e.join('')}.\r\n`),
    fc.array(fc.tuple(inner, inner), { maxLength: 3 }).map((pairs) => `%${pairs.length}\r\n${pairs.map(([k, v]) => k + v).join('')}`),
    fc.tuple(fc.array(fc.tuple(inner, inner), { minLength: 1, maxLength: 2 }), inner).map(([pairs, v]) => `|${pairs.length}\r\n${pairs.map(([a, b]) => a + b).join('')}${v}`),
  )
}

const errorPrefixes = ['ERR', 'WRONGTYPE', 'NOAUTH', 'EXECABORT', 'BUSYKEY']

/** A reply: a value, or an error (simple or blob) whose prefix is known. */
function replyArb(value: fc.Arbitrary<string>, line: fc.Arbitrary<string>): fc.Arbitrary<{ reply: string; errorPrefix: string | undefined }> {
  const message = fc.stringMatching(/^[a-z ]{0,30}$/)
  return fc.oneof(
    { weight: 3, arbitrary: valueArb(value, line, 2).map((reply) => ({ reply, errorPrefix: undefined })) },
    fc.tuple(fc.constantFrom(...errorPrefixes), message).map(([prefix, m]) => ({ reply: `-${prefix} ${m}\r\n`, errorPrefix: prefix })),
    fc.tuple(fc.constantFrom(...errorPrefixes), message).map(([prefix, m]) => ({ reply: `!${prefix.length + 1 + m.length}\r\n${prefix} ${m}\r\n`, errorPrefix: prefix })),
  )
}

/** Batches of pipelined commands with their replies; `pushes` RESP3 pushes may precede a reply. */
function conversationArb(options: { value: fc.Arbitrary<string>; line: fc.Arbitrary<string>; maxBatch: number }): fc.Arbitrary<{ batches: ModelCommand[][]; pushes: string[][] }> {
  const exchange = fc.tuple(commandArb(options.value), replyArb(options.value, options.line)).map(([c, r]) => ({ ...c, ...r }))
  const push = valueArb(options.value, options.line, 1).map((v) => `>2\r\n$10\r\ninvalidate\r\n${v}`)
  return fc.array(fc.tuple(fc.array(exchange, { minLength: 1, maxLength: options.maxBatch }), fc.array(push, { maxLength: 1 })), { minLength: 1, maxLength: 8 })
    .map((list) => ({ batches: list.map(([b]) => b), pushes: list.map(([, p]) => p) }))
}

/** Cuts `data` at the given sizes (cycled), each piece one record. */
function cut(data: string, direction: number, sizes: number[]): FeedRecord[] {
  const records: FeedRecord[] = []
  for (let at = 0, i = 0; at < data.length; i++) {
    const size = Math.max(1, sizes[i % sizes.length]!)
    records.push({ direction, data: data.slice(at, at + size) })
    at += size
  }
  return records
}

function expected(commands: ModelCommand[]): string[] {
  return commands.map((c) => `${c.name}|${c.key}|${c.arguments}|${c.errorPrefix === undefined ? 'ok' : `error ${c.errorPrefix}`}`)
}

function reported(commands: Reported[]): string[] {
  return commands.map((c) => `${c.name}|${c.key}|${c.arguments}|${c.outcome === 'error' ? `error ${c.errorPrefix}` : c.outcome}`)
}

const sizes = fc.array(fc.integer({ min: 1, max: 120 }), { minLength: 1, maxLength: 8 })

describe('Redis parser properties', () => {
  it('valid conversations cut into records at arbitrary points give back exactly their commands, in order', () => {
    fc.assert(
      fc.property(conversationArb({ value: anyBytes(60), line: lineBytes(20), maxBatch: 5 }), sizes, sizes, ({ batches, pushes }, requestSizes, replySizes) => {
        const records = batches.flatMap((batch, b) => [
          ...cut(batch.map((c) => resp(c.args)).join(''), 0, requestSizes),
          ...cut(pushes[b]!.join('') + batch.map((c) => c.reply).join(''), 1, replySizes),
        ])
        const run = feed(records)
        assert.deepEqual(reported(run.commands), expected(batches.flat()))
        assert.deepEqual(run.errors, {})
        const pushCount = pushes.flat().length
        assert.deepEqual(run.stats, pushCount === 0 ? {} : { outOfBand: pushCount })
      }),
      { numRuns: runs },
    )
  })

  it('cut to a capture size, every exchange whose command and reply fit is exact, and nothing is paired wrongly', () => {
    fc.assert(
      fc.property(conversationArb({ value: anyBytes(200), line: lineBytes(20), maxBatch: 1 }), fc.integer({ min: 8, max: 160 }), ({ batches }, capture) => {
        const commands = batches.flat()
        const records = commands.flatMap((c) => [{ direction: 0, data: resp(c.args) }, { direction: 1, data: c.reply }])
        const run = feed(records, { capture })
        const want = expected(commands)
        const got = reported(run.commands)
        // in order, each one the command it claims to be (a key may be cut short by the capture)
        let j = 0
        for (const line of got) {
          while (j < want.length && !sameCommand(line, want[j]!)) j++
          assert.ok(j < want.length, `${line} is no command of ${JSON.stringify(want)} after the ones before it: ${JSON.stringify(got)}`)
          j++
        }
        const fitting = commands.filter((c) => resp(c.args).length <= capture && c.reply.length <= capture)
        for (const c of fitting) assert.ok(got.includes(expected([c])[0]!), `${expected([c])[0]} fits in ${capture} bytes: ${JSON.stringify(got)}`)
      }),
      { numRuns: runs },
    )
  })

  it('a connection found mid-stream is in step from the exchange after the one it started in', () => {
    fc.assert(
      fc.property(conversationArb({ value: lineBytes(40), line: lineBytes(20), maxBatch: 1 }), fc.nat(), fc.nat(), ({ batches }, recordIndex, offset) => {
        const commands = batches.flat()
        const records = commands.flatMap((c) => [{ direction: 0, data: resp(c.args) }, { direction: 1, data: c.reply }])
        const start = recordIndex % records.length
        const first = records[start]!
        const from = offset % first.data.length
        const suffix = [{ direction: first.direction, data: first.data.slice(from) }, ...records.slice(start + 1)]
        const run = feed(suffix, { midStream: true })
        const after = expected(commands.slice(Math.floor(start / 2) + 1))
        const got = reported(run.commands)
        assert.deepEqual(got.slice(got.length - after.length), after, `started at record ${start}, byte ${from}`)
        assert.ok(got.length <= after.length + 1)
      }),
      { numRuns: runs },
    )
  })

  it('after garbage and a loss in both directions, the clean exchanges that follow are paired right again', () => {
    const token = fc.oneof(anyBytes(12), fc.constantFrom('*2\r\n', '*1\r\n', '$3\r\n', 'GET\r\n', '+OK\r\n', ':1\r\n', '\r\n', '*-1\r\n', '$100000\r\n', '%1\r\n', '>2\r\n', '$?\r\n', '*?\r\n', '|1\r\n'))
    const garbage = fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), fc.array(token, { minLength: 1, maxLength: 4 }).map((t) => t.join(''))), { minLength: 1, maxLength: 3 })
    const clean = fc.array(fc.tuple(commandArb(lineBytes(30)), replyArb(lineBytes(30), lineBytes(20))).map(([c, r]) => ({ ...c, ...r })), { minLength: 10, maxLength: 10 })
    fc.assert(
      fc.property(garbage, clean, fc.integer({ min: 1, max: 5000 }), (junk, commands, gap) => {
        const records: FeedRecord[] = junk.map(([direction, data]) => ({ direction, data }))
        commands.forEach((c, i) => {
          records.push({ direction: 0, data: resp(c.args), lostBefore: i === 0 ? gap : 0 })
          records.push({ direction: 1, data: c.reply, lostBefore: i === 0 ? gap : 0 })
        })
        const run = feed(records, { midStream: true })
        const got = reported(run.commands)
        assert.deepEqual(got.slice(-3), expected(commands.slice(-3)), JSON.stringify(got))
      }),
      { numRuns: runs },
    )
  })

  it('arbitrary bytes, positions and roles never throw and never queue past maxPending', () => {
    const record = fc.record({ direction: fc.integer({ min: 0, max: 1 }), data: anyBytes(200), extra: fc.integer({ min: 0, max: 300 }), jump: fc.integer({ min: -50, max: 50 }) })
    fc.assert(
      fc.property(fc.array(record, { maxLength: 30 }), fc.constantFrom('client', 'server', 'unknown') as fc.Arbitrary<'client' | 'server' | 'unknown'>, fc.boolean(), (list, role, midStream) => {
        const parser = new RedisParser<null>(() => {}, { maxPending: 8, maxDepth: 4 })
        const connection = parser.connection(null, role, { midStream })
        const positions = [0, 0]
        list.forEach((r, i) => {
          const data = Uint8Array.from(r.data, (c) => c.charCodeAt(0))
          positions[r.direction] = Math.max(0, positions[r.direction]! + r.jump)
          connection.push({ direction: r.direction, position: positions[r.direction]!, bytes: data.length + r.extra, data, startNs: i, endNs: i + 1 })
          positions[r.direction]! += data.length + r.extra
          assert.ok(connection.pending <= 8)
        })
        connection.close()
        assert.equal(connection.pending, 0)
      }),
      { numRuns: runs * 3 },
    )
  })
})

/** The same command and outcome; a key reported may be the start of the modelled one. */
function sameCommand(got: string, want: string): boolean {
  const [gName, gKey, gArgs, gOutcome] = got.split('|')
  const [wName, wKey, wArgs, wOutcome] = want.split('|')
  return gName === wName && gArgs === wArgs && gOutcome === wOutcome && (gKey === wKey || (gKey !== 'undefined' && wKey!.startsWith(gKey!)))
}
