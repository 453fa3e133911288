/**
 * SQL masking and naming (runtime/protocols/sql.ts): exact outputs for the statements the real
 * clients send (pgbench's, psql's, the mysql client's), and fuzzing: any text masks without
 * throwing, and a literal never survives masking.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { maskSqlLiterals, summarizeSql } from '../../runtime/protocols/sql.ts'

test('literals of every kind become ?, IN lists collapse, comments go, placeholders and names stay', () => {
  const cases: [string, 'postgresql' | 'mysql', string][] = [
    ["SELECT * FROM users WHERE name = 'O''Brien' AND age > 42 -- secret 'x'", 'postgresql', 'SELECT * FROM users WHERE name = ? AND age > ?'],
    ['select abalance from pgbench_accounts where aid = $1', 'postgresql', 'select abalance from pgbench_accounts where aid = $1'],
    ['UPDATE pgbench_accounts SET abalance = abalance + -4711 WHERE aid = 12;', 'postgresql', 'UPDATE pgbench_accounts SET abalance = abalance + -? WHERE aid = ?;'],
    ["INSERT INTO t (a, b) VALUES (1.5e3, E'it\\'s'), (0x1F, $$dollar 'body'$$)", 'postgresql', 'INSERT INTO t (a, b) VALUES (?, ?), (?, ?)'],
    ["SELECT $tag$ a $ b $tag$, B'0101', X'ff', .5", 'postgresql', 'SELECT ?, ?, ?, ?'],
    ['SELECT * FROM a WHERE id IN (1, 2, 3) AND x IN (SELECT y FROM b)', 'postgresql', 'SELECT * FROM a WHERE id IN (?) AND x IN (SELECT y FROM b)'],
    ['SELECT * FROM "Quoted Table" /* hint: 123 */ WHERE "col" = 7', 'postgresql', 'SELECT * FROM "Quoted Table" WHERE "col" = ?'],
    ["SELECT * FROM `db`.`tbl` WHERE s = \"secret\" AND t = 'a\\'b' # trailing", 'mysql', 'SELECT * FROM `db`.`tbl` WHERE s = ? AND t = ?'],
    ['select 12abc from t1 where c = 12', 'mysql', 'select 12abc from t1 where c = ?'],
    ["SELECT 'cut by the capture", 'postgresql', 'SELECT ?'],
    ['  SELECT\n\t1  ', 'postgresql', 'SELECT ?'],
  ]
  for (const [sql, dialect, masked] of cases) assert.equal(maskSqlLiterals(sql, dialect), masked, sql)
})

test('the operation is the first keyword; the collection only when one table is named', () => {
  const cases: [string, { operation?: string; collection?: string }][] = [
    ['SELECT abalance FROM pgbench_accounts WHERE aid = $1', { operation: 'SELECT', collection: 'pgbench_accounts' }],
    ['update pgbench_tellers set tbalance = tbalance + 1 where tid = 2', { operation: 'UPDATE', collection: 'pgbench_tellers' }],
    ['INSERT INTO pgbench_history (tid, bid) VALUES (1, 2)', { operation: 'INSERT', collection: 'pgbench_history' }],
    ['DELETE FROM s.t WHERE x = 1', { operation: 'DELETE', collection: 's.t' }],
    ['CREATE TABLE IF NOT EXISTS public."Accounts" (id int)', { operation: 'CREATE', collection: 'public.Accounts' }],
    ['TRUNCATE TABLE pgbench_history', { operation: 'TRUNCATE', collection: 'pgbench_history' }],
    ['SELECT * FROM a JOIN b ON a.id = b.id', { operation: 'SELECT' }],
    ['SELECT * FROM a, b', { operation: 'SELECT' }],
    ['SELECT * FROM a WHERE id IN (SELECT id FROM b)', { operation: 'SELECT' }],
    ['SELECT * FROM (SELECT 1) x', { operation: 'SELECT' }],
    ['DROP TABLE a, b', { operation: 'DROP' }],
    ['(SELECT 1)', { operation: 'SELECT' }],
    ['BEGIN', { operation: 'BEGIN' }],
    ['', {}],
    ['42', {}],
  ]
  for (const [sql, expected] of cases) assert.deepEqual(summarizeSql(sql), expected, sql)
})

test('fuzz: any text masks without throwing, and no quoted or numeric literal survives', () => {
  const secret = fc.stringMatching(/^[A-Za-z]{6,12}$/)
  const literal = fc.oneof(
    secret.map((s) => ({ sql: `'${s}'`, secret: s })),
    secret.map((s) => ({ sql: `'${s}''s'`, secret: s })),
    fc.integer({ min: 100000, max: 1e9 }).map((n) => ({ sql: String(n), secret: String(n) })),
    secret.map((s) => ({ sql: `$q$${s}$q$`, secret: s })),
  )
  fc.assert(fc.property(fc.array(fc.oneof(fc.constantFrom('SELECT', 'x', '=', ',', '(', ')', ' ', 'IN', 'WHERE', '--', '/*', '*/', '\n'), literal), { maxLength: 30 }), (parts) => {
    const sql = parts.map((p) => (typeof p === 'string' ? p : ` ${p.sql} `)).join(' ')
    const masked = maskSqlLiterals(sql, 'postgresql')
    summarizeSql(sql)
    for (const p of parts) if (typeof p !== 'string') assert.ok(!masked.includes(p.secret), `"${p.secret}" survived in ${masked} (from ${sql})`)
  }), { numRuns: 2000 })
  fc.assert(fc.property(fc.string({ maxLength: 200 }), fc.constantFrom('postgresql' as const, 'mysql' as const), (text, dialect) => {
    maskSqlLiterals(text, dialect)
    summarizeSql(text, dialect)
  }), { numRuns: 2000 })
})
