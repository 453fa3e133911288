/**
 * The Redis parser (runtime/protocols/redis.ts) on real traffic of redis-cli and redis-benchmark
 * (test/unit/redis-captures.ts, captured with strace), and on RESP2/RESP3 exchanges written from
 * the protocol's specification (https://redis.io/docs/latest/develop/reference/protocol-spec/)
 * for what those clients never send: attributes, streamed strings and aggregates, inline commands,
 * CLIENT REPLY, pub/sub in RESP2 with patterns and UNSUBSCRIBE, MONITOR, RESET.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { capture } from './redis-captures.ts'
import { back, command, feed, out, recordsOf, summary, type FeedRecord } from './redis-feed.ts'

describe('Redis parser on captured redis-cli and redis-benchmark traffic', () => {
  it('SET, GET, INCR, lists, hashes, SELECT and CLIENT SETNAME: one command each, keys and databases', () => {
    const run = feed(recordsOf(capture('basic')))
    assert.deepEqual(summary(run.commands), [
      'COMMAND DOCS args=0 ok db0',
      'SET key=greeting args=2 ok db0',
      'GET key=greeting args=1 ok db0',
      'INCR key=counter args=1 ok db0',
      'INCR key=counter args=1 ok db0',
      'GET key=missing args=1 ok db0',
      'RPUSH key=list args=4 ok db0',
      'LRANGE key=list args=3 ok db0',
      'HSET key=h args=5 ok db0',
      'HGETALL key=h args=1 ok db0',
      'SELECT args=1 ok db0',
      'SET key=k2 args=2 ok db2',
      'GET key=greeting args=1 ok db2',
      'CLIENT SETNAME args=1 ok db2',
      'DEL key=k2 args=1 ok db2',
    ])
    assert.deepEqual(run.errors, {})
    assert.deepEqual(run.stats, {})
    // COMMAND DOCS: sent in record 0, its reply read in records 1 to 11 (172,298 bytes of nested arrays)
    assert.deepEqual([run.commands[0]!.startNs, run.commands[0]!.endNs, run.commands[0]!.tid], [0, 115, 100])
    assert.deepEqual([run.commands[1]!.startNs, run.commands[1]!.endNs], [120, 135])
    assert.ok(run.commands.every((c) => c.known && c.side === 'client'))
  })

  it('error replies give the prefix, and the text up to the first quote, so echoed arguments stay out', () => {
    const run = feed(recordsOf(capture('errors')))
    assert.deepEqual(run.commands.slice(1).map((c) => [c.name, c.key, c.outcome, c.errorPrefix, c.errorMessage, c.known]), [
      ['GET', 'list', 'error', 'WRONGTYPE', 'WRONGTYPE Operation against a key holding the wrong kind of value', true],
      ['NOSUCHCMD', undefined, 'error', 'ERR', 'ERR unknown command', false],
      ['GET', undefined, 'error', 'ERR', 'ERR wrong number of arguments for', true],
      ['INCR', 'greeting', 'error', 'ERR', 'ERR value is not an integer or out of range', true],
      ['set', 'lower-case-key', 'ok', undefined, undefined, true],
      ['Get', 'lower-case-key', 'ok', undefined, undefined, true],
    ])
    assert.ok(!JSON.stringify(run.commands).includes('secret-arg'), 'the unknown command\'s arguments, echoed in its error, are not kept')
  })

  it('MULTI/EXEC: each queued command gets its element of EXEC\'s reply; EXECABORT, DISCARD and a WATCH abort', () => {
    const run = feed(recordsOf(capture('transactions')))
    assert.deepEqual(summary(run.commands).slice(1), [
      'MULTI args=0 ok db0',
      'SET key=t args=2 ok db0',
      'INCR key=t args=1 ok db0',
      'LPUSH key=t args=2 error WRONGTYPE db0',
      'EXEC args=0 ok db0',
      'MULTI args=0 ok db0',
      // refused when queued: its own error, at once; EXEC then aborts the rest
      'NOSUCH args=0 error ERR db0',
      'SET key=t args=2 error EXECABORT db0',
      'EXEC args=0 error EXECABORT db0',
      'MULTI args=0 ok db0',
      'SET key=t args=2 discarded db0',
      'DISCARD args=0 ok db0',
      'WATCH key=w args=1 ok db0',
      'SET key=w args=2 ok db0',
      'MULTI args=0 ok db0',
      'INCR key=w args=1 aborted db0',
      'EXEC args=0 ok db0',
      'GET key=t args=1 ok db0',
    ])
    // a queued command lasts from its send to the end of EXEC's reply (records 10 and 11)
    const set = run.commands[2]!
    assert.deepEqual([set.startNs, set.endNs], [140, 215])
    assert.deepEqual(run.stats, {})
  })

  it('AUTH and HELLO ... AUTH: no argument is kept, so no password', () => {
    const run = feed(recordsOf(capture('auth')))
    assert.deepEqual(summary(run.commands), [
      'COMMAND DOCS args=0 error NOAUTH db0',
      'COMMAND args=0 error NOAUTH db0',
      'GET key=k args=1 error NOAUTH db0',
      'AUTH args=1 error WRONGPASS db0',
      'AUTH args=1 ok db0',
      'SET key=k args=2 ok db0',
      'HELLO args=4 ok db0',
      'GET key=k args=1 ok db0',
    ])
    const text = JSON.stringify(run.commands)
    assert.ok(!text.includes('s3cret-pass') && !text.includes('wrong-pass'))
  })

  it('RESP3 (redis-cli -3): maps, sets, doubles, nulls, verbatim strings, big numbers; a reply beyond the capture is lost alone', () => {
    // COMMAND DOCS's reply was kept 256 bytes a 16 KiB read: its place is lost, and found again with HSET's reply
    const run = feed(recordsOf(capture('resp3')))
    assert.deepEqual(summary(run.commands), [
      'HELLO args=1 ok db0',
      'HSET key=h3 args=5 ok db0',
      'HGETALL key=h3 args=1 ok db0',
      'SADD key=s args=3 ok db0',
      'SMEMBERS key=s args=1 ok db0',
      'ZADD key=z args=3 ok db0',
      'ZSCORE key=z args=2 ok db0',
      'GET key=nothing args=1 ok db0',
      'CLIENT INFO args=0 ok db0',
      'EVAL args=2 ok db0',
    ])
    assert.equal(run.stats.lostCommands, 1)
    assert.deepEqual(run.errors, {})
  })

  it('RESP3: an invalidation push after a reply in the same read answers no command', () => {
    const run = feed(recordsOf(capture('resp3-more')))
    assert.deepEqual(summary(run.commands), [
      'HELLO args=1 ok db0',
      'EVAL args=2 ok db0',
      'CLIENT TRACKING args=1 ok db0',
      'GET key=tk args=1 ok db0',
      'SET key=tk args=2 ok db0',
      'PING args=0 ok db0',
      'SELECT args=1 ok db0',
      'GET key=tk args=1 ok db3',
    ])
    assert.equal(run.stats.outOfBand, 1)
    assert.equal(run.stats.lostCommands, 1)
  })

  it('SUBSCRIBE in RESP2 and RESP3: one command, ended by its last notice; messages are no replies', () => {
    const resp2 = feed(recordsOf(capture('subscribe-resp2')))
    assert.deepEqual(summary(resp2.commands), ['SUBSCRIBE args=2 ok db0'])
    // the two notices came in record 1
    assert.equal(resp2.commands[0]!.endNs, 15)
    assert.deepEqual(resp2.stats, { outOfBand: 2 })
    const resp3 = feed(recordsOf(capture('subscribe-resp3')))
    assert.deepEqual(summary(resp3.commands), ['HELLO args=1 ok db0', 'SUBSCRIBE args=2 ok db0'])
    assert.deepEqual(resp3.stats, { outOfBand: 2 })
  })

  it('redis-cli --pipe: 40 SETs in one write, then ECHO after an empty line', () => {
    const run = feed(recordsOf(capture('pipe')))
    assert.equal(run.commands.length, 41)
    assert.deepEqual(run.commands.slice(0, 40).map((c) => `${c.name} ${c.key} ${c.outcome} ${c.startNs}-${c.endNs}`), Array.from({ length: 40 }, (_, i) => `SET pipe:${i} ok 0-25`))
    assert.deepEqual(summary(run.commands.slice(40)), ['ECHO args=1 ok db0'])
    assert.deepEqual(run.stats, {})
  })

  it('redis-benchmark -P 16: 48 SETs in three writes, each answered by one read', () => {
    const run = feed(recordsOf(capture('benchmark')))
    assert.deepEqual(summary(run.commands.slice(0, 2)), ['CONFIG GET args=1 ok db0', 'CONFIG GET args=1 ok db0'])
    const sets = run.commands.slice(2)
    assert.equal(sets.length, 48)
    assert.ok(sets.every((c) => c.name === 'SET' && c.key === 'key:__rand_int__' && c.outcome === 'ok'))
    assert.deepEqual([sets[0]!.startNs, sets[0]!.endNs, sets[47]!.startNs, sets[47]!.endNs], [20, 35, 60, 75])
  })

  it('a 100,000-byte value beyond the capture, written and read, is skipped by its length', () => {
    const set = feed(recordsOf(capture('big-set')))
    assert.deepEqual(summary(set.commands), ['SET key=big args=2 ok db0'])
    const get = feed(recordsOf(capture('big-get')))
    assert.deepEqual(summary(get.commands), ['GET key=big args=1 ok db0'])
    assert.equal(get.commands[0]!.endNs, 75)
    assert.deepEqual([set.errors, set.stats, get.errors, get.stats], [{}, {}, {}, {}])
  })

  it('captures cut to 4096 bytes a call, as the kernel would: COMMAND DOCS is lost, counted, and the rest is exact', () => {
    const full = feed(recordsOf(capture('basic')))
    const cut = feed(recordsOf(capture('basic')), { capture: 4096 })
    assert.deepEqual(summary(cut.commands), summary(full.commands).slice(1))
    assert.equal(cut.stats.lostCommands, 1)
  })

  it('every capture split into one-byte records gives the same commands', () => {
    for (const name of ['basic', 'errors', 'transactions', 'auth', 'subscribe-resp2', 'subscribe-resp3', 'pipe', 'benchmark'] as const) {
      const whole = feed(recordsOf(capture(name)))
      const bytes: FeedRecord[] = capture(name).flatMap(([direction, , data]) => Array.from(data, (c) => ({ direction, data: c })))
      const split = feed(bytes)
      assert.deepEqual(summary(split.commands), summary(whole.commands), name)
      assert.deepEqual(split.errors, {}, name)
    }
  })

  it('without keys kept, no key is reported; a long key is cut and counted', () => {
    const none = feed(recordsOf(capture('basic')), { keys: false })
    assert.ok(none.commands.every((c) => c.key === undefined))
    const cut = feed([out(command('SET', 'k'.repeat(40), 'v')), back('+OK\r\n')], { maxKeyBytes: 16 })
    assert.equal(cut.commands[0]!.key, 'k'.repeat(16))
    assert.equal(cut.stats.keyBytesCut, 24)
  })
})

describe('Redis parser on exchanges written from the RESP specification', () => {
  it('RESP3 attributes before a reply and inside it, streamed strings and aggregates, blob errors', () => {
    const run = feed([
      out(command('GET', 'a') + command('MGET', 'a', 'b') + command('GET', 's') + command('LRANGE', 'l', '0', '-1') + command('HGETALL', 'h') + command('GET', 'x')),
      // the specification's attribute example, before the reply it annotates
      back('|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n'),
      // an attribute before an element
      back('*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nx\r\n$1\r\ny\r\n'),
      back('$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n'),
      back('*?\r\n:1\r\n*?\r\n+nested\r\n.\r\n:3\r\n.\r\n'),
      back('%?\r\n+a\r\n:1\r\n+b\r\n:2\r\n.\r\n'),
      back('!21\r\nSYNTAX invalid syntax\r\n'),
    ])
    assert.deepEqual(summary(run.commands), [
      'GET key=a args=1 ok db0',
      'MGET key=a args=2 ok db0',
      'GET key=s args=1 ok db0',
      'LRANGE key=l args=3 ok db0',
      'HGETALL key=h args=1 ok db0',
      'GET key=x args=1 error SYNTAX db0',
    ])
    assert.equal(run.commands[5]!.errorMessage, 'SYNTAX invalid syntax')
    assert.deepEqual([run.errors, run.stats], [{}, {}])
  })

  it('RESP3 simple types: null, boolean, double, big number, verbatim string, and a push while a reply is due', () => {
    const run = feed([
      out(command('GET', 'a') + command('EXISTS', 'a') + command('ZSCORE', 'z', 'm') + command('INCR', 'n') + command('LOLWUT')),
      back('_\r\n#t\r\n,inf\r\n'),
      back('>4\r\n+pubsub\r\n+message\r\n+somechannel\r\n+this is the message\r\n'),
      back('(3492890328409238509324850943850943825024385\r\n=15\r\ntxt:Some string\r\n'),
    ])
    assert.deepEqual(summary(run.commands), ['GET key=a args=1 ok db0', 'EXISTS key=a args=1 ok db0', 'ZSCORE key=z args=2 ok db0', 'INCR key=n args=1 ok db0', 'LOLWUT args=0 ok db0'])
    assert.deepEqual(run.stats, { outOfBand: 1 })
  })

  it('inline commands, with quotes and escapes as the server splits them', () => {
    const run = feed([
      out(command('PING')), back('+PONG\r\n'),
      out('SET "my key" \'it\\\'s\'\r\n'), back('+OK\r\n'),
      out('GET "\\x41\\tB"\r\n\r\n'), back('$-1\r\n'),
      out('  incr counter  \n'), back(':1\r\n'),
    ])
    assert.deepEqual(summary(run.commands), ['PING args=0 ok db0', 'SET key=my key args=2 ok db0', 'GET key=A\tB args=1 ok db0', 'incr key=counter args=1 ok db0'])
    assert.deepEqual(run.errors, {})
  })

  it('CLIENT REPLY OFF and SKIP: commands the server does not answer end when sent', () => {
    const run = feed([
      out(command('SET', 'a', '1')), back('+OK\r\n'),
      out(command('CLIENT', 'REPLY', 'SKIP') + command('SET', 'b', '2') + command('SET', 'c', '3')), back('+OK\r\n'),
      out(command('CLIENT', 'REPLY', 'off') + command('INCR', 'n') + command('CLIENT', 'REPLY', 'ON') + command('GET', 'a')), back('+OK\r\n$1\r\n1\r\n'),
    ])
    assert.deepEqual(run.commands.map((c) => `${c.name} ${c.key ?? '-'} ${c.outcome} ${c.endNs}`), [
      'SET a ok 15',
      'CLIENT REPLY - ok 25', // SKIP: ends when sent
      'SET b ok 25', // skipped: ends when sent
      'SET c ok 35',
      'CLIENT REPLY - ok 45', // OFF
      'INCR n ok 45',
      'CLIENT REPLY - ok 55', // ON is answered
      'GET a ok 55',
    ])
  })

  it('RESP2 pub/sub: PSUBSCRIBE, PING in subscribed mode, UNSUBSCRIBE of all; after it, an array of "message" is a reply again', () => {
    const run = feed([
      out(command('SUBSCRIBE', 'a', 'b')),
      back('*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n'),
      back('*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n'),
      out(command('PSUBSCRIBE', 'n*') + command('PING')),
      back('*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:3\r\n*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$2\r\nnx\r\n$1\r\nv\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n'),
      out(command('UNSUBSCRIBE') + command('PUNSUBSCRIBE')),
      back('*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n*3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:0\r\n'),
      out(command('LRANGE', 'l', '0', '-1')),
      back('*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\ny\r\n'),
    ])
    assert.deepEqual(run.commands.map((c) => `${c.name} ${c.outcome} ${c.endNs}`), [
      'SUBSCRIBE ok 25',
      'PSUBSCRIBE ok 45',
      'PING ok 45',
      // an UNSUBSCRIBE of all ends at its first notice; the next is the surplus of the same kind
      'UNSUBSCRIBE ok 65',
      'PUNSUBSCRIBE ok 65',
      'LRANGE ok 85',
    ])
    // two messages, one pmessage, one surplus unsubscribe notice
    assert.deepEqual(run.stats, { outOfBand: 3 })
  })

  it('MONITOR: its feed answers no command', () => {
    const run = feed([
      out(command('MONITOR')), back('+OK\r\n'),
      back('+1700000000.123456 [0 127.0.0.1:5000] "SET" "k" "secret"\r\n+1700000000.2 [0 127.0.0.1:5000] "GET" "k"\r\n'),
    ])
    assert.deepEqual(summary(run.commands), ['MONITOR args=0 ok db0'])
    assert.deepEqual(run.stats, { outOfBand: 2 })
  })

  it('RESET ends a transaction, the database and RESP2 pub/sub', () => {
    const run = feed([
      out(command('SELECT', '5') + command('MULTI') + command('SET', 'a', '1') + command('RESET') + command('GET', 'a')),
      back('+OK\r\n+OK\r\n+QUEUED\r\n+RESET\r\n$-1\r\n'),
    ])
    assert.deepEqual(summary(run.commands), ['SELECT args=1 ok db0', 'MULTI args=0 ok db5', 'SET key=a args=2 discarded db0', 'RESET args=0 ok db5', 'GET key=a args=1 ok db0'])
  })

  it('a key in UTF-8 is text; one that is not is kept byte for byte', () => {
    const utf8 = Buffer.from('użytkownik:1', 'utf8').toString('latin1')
    const run = feed([out(command('GET', utf8)), back('$-1\r\n'), out(command('GET', '\xff\xfe')), back('$-1\r\n')])
    assert.deepEqual(run.commands.map((c) => c.key), ['użytkownik:1', '\xff\xfe'])
  })

  it('a connection of unknown role: the direction of commands is found from the first record', () => {
    const run = feed([back('+OK\r\n'), out(command('GET', 'a')), back('$1\r\nx\r\n')], { role: 'unknown', midStream: true })
    assert.deepEqual(summary(run.commands), ['GET key=a args=1 ok db?'])
    assert.equal(run.commands[0]!.side, 'client')
    assert.equal(run.connection.role, 'client')
    // the server's end: commands come in, replies go out
    const server = feed([{ direction: 1, data: command('INCR', 'n') }, { direction: 0, data: ':1\r\n' }], { role: 'server' })
    assert.deepEqual(server.commands.map((c) => `${c.side} ${c.name} ${c.key} ${c.outcome}`), ['server INCR n ok'])
  })

  it('the connection closes with commands waiting: they end as closed', () => {
    const run = feed([out(command('BLPOP', 'q', '0') + command('GET', 'a'))])
    assert.deepEqual(summary(run.commands), ['BLPOP key=q args=2 closed db0', 'GET key=a args=1 closed db0'])
  })

  it('a full queue: commands beyond it are counted, and their replies are skipped so later ones pair right', () => {
    const run = feed([
      out(command('INCR', 'a') + command('INCR', 'b') + command('INCR', 'c') + command('INCR', 'd')),
      back(':1\r\n:2\r\n:3\r\n:4\r\n'),
      out(command('GET', 'e')), back('$1\r\ne\r\n'),
    ], { maxPending: 2 })
    assert.deepEqual(run.commands.map((c) => `${c.name} ${c.key} ${c.endNs}`), ['INCR a 15', 'INCR b 15', 'GET e 35'])
    assert.deepEqual(run.stats, { queueOverflows: 2, unmatchedReplies: 2 })
  })
})

describe('Redis parser after lost, uncaptured or malformed bytes', () => {
  it('lost commands: the queued ones keep their replies; pairing resumes once a command follows a reply', () => {
    const run = feed([
      out(command('SET', 'a', '1')),
      // lost: one SET of 29 bytes, whose reply comes all the same
      { direction: 0, data: command('GET', 'b'), lostBefore: 29 },
      back('+OK\r\n+OK\r\n'),
      back('$1\r\n2\r\n'),
      out(command('INCR', 'c')), back(':1\r\n'),
    ])
    // GET b was sent while the lost SET's reply was due: it cannot be paired safely
    assert.deepEqual(run.commands.map((c) => `${c.name} ${c.key} ${c.endNs}`), ['SET a 25', 'INCR c 55'])
    assert.deepEqual(run.stats, { lostBytes: 29, resyncs: 1, lostCommands: 1, unmatchedReplies: 2 })
  })

  it('lost replies: the commands waiting are dropped and counted; the next exchange pairs again', () => {
    const run = feed([
      out(command('GET', 'a') + command('GET', 'b')),
      back('$1\r\n1\r\n'),
      { direction: 1, data: '$1\r\n', lostBefore: 3 },
      out(command('GET', 'c')), back('$1\r\n3\r\n'),
    ])
    assert.deepEqual(run.commands.map((c) => `${c.name} ${c.key} ${c.endNs}`), ['GET a 15', 'GET c 45'])
    assert.equal(run.stats.lostCommands, 1)
  })

  it('commands beyond the capture of a write are lost; a value beyond it is not', () => {
    const pipelined = command('SET', 'a', '1') + command('SET', 'b', '2') + command('SET', 'c', '3')
    const run = feed([
      { direction: 0, data: pipelined, bytes: pipelined.length },
      back('+OK\r\n+OK\r\n+OK\r\n'),
      out(command('GET', 'a')), back('$1\r\n1\r\n'),
    ], { capture: 40 })
    assert.deepEqual(run.commands.map((c) => `${c.name} ${c.key}`), ['SET a', 'GET a'])
    assert.equal(run.stats.unmatchedReplies, 2)
  })

  it('malformed commands and replies are counted by reason and never thrown', () => {
    const run = feed([
      out('*2\r\n$3\r\nGET\r\n#1\r\nx\r\n'),
      back('-ERR Protocol error: expected \'$\', got \'#\'\r\n'),
      out(command('GET', 'a')), back('@bad\r\n'),
      out(command('GET', 'b')), back('$1\r\nb\r\n'),
    ])
    assert.deepEqual(run.errors, { 'bulk-expected': 1, 'reply-type': 1 })
    assert.deepEqual(run.commands.map((c) => `${c.name} ${c.key} ${c.outcome}`), ['GET b ok'])
  })

  it('mid-stream: a connection found open starts at the next command and reply boundaries', () => {
    const run = feed([
      out('lue-of-a-set\r\n'), back('OK\r\n'),
      out(command('GET', 'k')), back('$5\r\nvalue\r\n'),
    ], { midStream: true })
    assert.deepEqual(summary(run.commands), ['GET key=k args=1 ok db?'])
  })

  // the next three were found by test/unit/redis-fuzz.test.ts
  it('mid-stream: reply bytes passed over while looking for a boundary drop the commands they may answer', () => {
    // `+\0`: a simple string may hold any byte but CR and LF
    const run = feed([out(command('SET', 'a', '')), back('junk\r\n+\0\r\n'), out(command('GET', 'a')), back('*-1\r\n')], { midStream: true })
    assert.deepEqual(summary(run.commands), ['GET key=a args=1 ok db?'])
    assert.equal(run.stats.lostCommands, 1)
  })

  it('after garbage, a place found is trusted only once a record ends on a value\'s end', () => {
    const records: FeedRecord[] = [back('*-1\r\n|1\r\n'), back('$100000\r\n*2\r\n'), out('*2\r\n')]
    const pairs: [string[], string][] = [[['ECHO', 'x'], '#t\r\n'], [['GET', 'a'], '+\0\r\n'], [['INCR', 'a'], ':1\r\n'], [['DEL', 'a'], '*-1\r\n']]
    pairs.forEach(([args, reply], i) => records.push({ ...out(command(...args)), lostBefore: i === 0 ? 1 : 0 }, { ...back(reply), lostBefore: i === 0 ? 1 : 0 }))
    const run = feed(records, { midStream: true })
    assert.deepEqual(summary(run.commands).slice(-3), ['GET key=a args=1 ok db?', 'INCR key=a args=1 ok db?', 'DEL key=a args=1 ok db?'])
  })

  it('an error whose prefix the capture cut is a lost place, not a wrong prefix', () => {
    const run = feed([out(command('PING')), { direction: 1, data: '!10\r\nWRONGTYPE \r\n' }, out(command('PING')), back('+PONG\r\n')], { capture: 12 })
    assert.ok(run.commands.every((c) => c.errorPrefix === undefined), JSON.stringify(run.commands))
  })

  it('after a resync, a declared length that runs past its record is not trusted', () => {
    const run = feed([
      // found open inside a value that looks like a command declaring a 1 MB argument
      out('x\r\n*2\r\n$3\r\nGET\r\n$1000000\r\n'), back('+OK\r\n'),
      out(command('GET', 'k')), back('$1\r\nv\r\n'),
    ], { midStream: true })
    assert.deepEqual(summary(run.commands), ['GET key=k args=1 ok db?'])
  })
})
