/**
 * SQL text as the database plugins export it: literals masked (secrets and personal data live in
 * literals, and masked text groups the same statement together), and the operation and table
 * named for `db.operation.name` and `db.collection.name`. A small lexer rather than a parser: it
 * must take any text a client sends (any dialect, cut at the capture size, not SQL at all) and
 * never fail, and it runs once per query.
 */

export type SqlDialect = 'postgresql' | 'mysql'

/** Token kinds (numbers, so a token is a small monomorphic object). */
const Token = { Word: 0, QuotedName: 1, Literal: 2, Placeholder: 3, Punct: 4, Space: 5, Comment: 6 } as const
type Token = (typeof Token)[keyof typeof Token]

interface Lexed { kind: Token; start: number; end: number }

const isDigit = (c: number): boolean => c >= 48 && c <= 57
const isWordStart = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c >= 128
const isWordPart = (c: number): boolean => isWordStart(c) || isDigit(c) || c === 36
const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13 || c === 12

/** Splits `sql` into tokens; text it cannot make sense of becomes single punctuation tokens. */
function lex(sql: string, dialect: SqlDialect): Lexed[] {
  const tokens: Lexed[] = []
  const n = sql.length
  let i = 0
  const push = (kind: Token, end: number): void => {
    tokens.push({ kind, start: i, end })
    i = end
  }
  while (i < n) {
    const c = sql.charCodeAt(i)
    const next = i + 1 < n ? sql.charCodeAt(i + 1) : 0
    if (isSpace(c)) {
      let j = i + 1
      while (j < n && isSpace(sql.charCodeAt(j))) j++
      push(Token.Space, j)
    } else if ((c === 45 && next === 45) || (c === 35 && dialect === 'mysql')) { // -- or # comment
      const eol = sql.indexOf('\n', i)
      push(Token.Comment, eol < 0 ? n : eol)
    } else if (c === 47 && next === 42) { // /* comment */
      const close = sql.indexOf('*/', i + 2)
      push(Token.Comment, close < 0 ? n : close + 2)
    } else if (c === 39) { // 'string'
      push(Token.Literal, quotedEnd(sql, i, 39, dialect === 'mysql'))
    } else if (c === 34) { // "identifier" in PostgreSQL, "string" in MySQL (without ANSI_QUOTES)
      push(dialect === 'mysql' ? Token.Literal : Token.QuotedName, quotedEnd(sql, i, 34, dialect === 'mysql'))
    } else if (c === 96) { // `identifier`
      push(Token.QuotedName, quotedEnd(sql, i, 96, false))
    } else if ((c === 69 || c === 101) && next === 39 && dialect === 'postgresql') { // E'escaped'
      push(Token.Literal, quotedEnd(sql, i + 1, 39, true))
    } else if ((c === 66 || c === 98 || c === 88 || c === 120 || c === 78 || c === 110) && next === 39) { // B'0101' X'ff' N'text'
      push(Token.Literal, quotedEnd(sql, i + 1, 39, dialect === 'mysql'))
    } else if (c === 36 && dialect === 'postgresql') { // $1 placeholder or $tag$ dollar quote $tag$
      if (isDigit(next)) {
        let j = i + 1
        while (j < n && isDigit(sql.charCodeAt(j))) j++
        push(Token.Placeholder, j)
      } else {
        let j = i + 1
        while (j < n && isWordPart(sql.charCodeAt(j)) && sql.charCodeAt(j) !== 36) j++
        if (j < n && sql.charCodeAt(j) === 36) {
          const tag = sql.slice(i, j + 1)
          const close = sql.indexOf(tag, j + 1)
          push(Token.Literal, close < 0 ? n : close + tag.length)
        } else push(Token.Punct, i + 1)
      }
    } else if (isDigit(c) || (c === 46 && isDigit(next))) {
      let j = numberEnd(sql, i)
      // 12abc is a name (MySQL allows names that start with digits), not a number
      if (j < n && isWordStart(sql.charCodeAt(j))) {
        while (j < n && isWordPart(sql.charCodeAt(j))) j++
        push(Token.Word, j)
      } else push(Token.Literal, j)
    } else if (isWordStart(c)) {
      let j = i + 1
      while (j < n && isWordPart(sql.charCodeAt(j))) j++
      push(Token.Word, j)
    } else if (c === 63) {
      push(Token.Placeholder, i + 1)
    } else {
      push(Token.Punct, i + 1)
    }
  }
  return tokens
}

/** The end of a quoted run starting at `start` (the quote); doubled quotes, and backslashes when `backslash`, escape. */
function quotedEnd(sql: string, start: number, quote: number, backslash: boolean): number {
  for (let j = start + 1; j < sql.length; j++) {
    const c = sql.charCodeAt(j)
    if (backslash && c === 92) { j++; continue }
    if (c !== quote) continue
    if (sql.charCodeAt(j + 1) === quote) { j++; continue }
    return j + 1
  }
  // unterminated (the capture cut it): the rest is the literal
  return sql.length
}

/** The end of a number: 0x1f, 0b101, 12, 1.5, .5, 1e-3. */
function numberEnd(sql: string, start: number): number {
  const n = sql.length
  let j = start
  const second = sql.charCodeAt(start + 1) | 0x20
  if (sql.charCodeAt(start) === 48 && (second === 120 || second === 98)) {
    j += 2
    while (j < n && isWordPart(sql.charCodeAt(j))) j++
    return j
  }
  while (j < n && isDigit(sql.charCodeAt(j))) j++
  if (sql.charCodeAt(j) === 46) { j++; while (j < n && isDigit(sql.charCodeAt(j))) j++ }
  if ((sql.charCodeAt(j) | 0x20) === 101) {
    let k = j + 1
    if (sql.charCodeAt(k) === 43 || sql.charCodeAt(k) === 45) k++
    if (isDigit(sql.charCodeAt(k))) {
      while (k < n && isDigit(sql.charCodeAt(k))) k++
      j = k
    }
  }
  return j
}

/**
 * `sql` with every literal (strings, numbers, hex and bit strings, dollar-quoted bodies) replaced
 * by `?`, lists of them in `IN (...)` collapsed to `(?)`, and comments removed (they may quote
 * anything). Placeholders ($1, ?) and identifiers stay. Whitespace runs become one space.
 */
export function maskSqlLiterals(sql: string, dialect: SqlDialect): string {
  const tokens = lex(sql, dialect)
  let out = ''
  let lastWord = ''
  for (let t = 0; t < tokens.length; t++) {
    const token = tokens[t]!
    switch (token.kind) {
      case Token.Comment:
      case Token.Space:
        if (out.length > 0 && !out.endsWith(' ')) out += ' '
        continue
      case Token.Literal:
        out += '?'
        break
      case Token.Punct: {
        const collapsed = lastWord === 'IN' && sql.charCodeAt(token.start) === 40 ? inListEnd(sql, tokens, t) : -1
        if (collapsed >= 0) {
          out += '(?)'
          t = collapsed
        } else out += sql.slice(token.start, token.end)
        break
      }
      default:
        out += sql.slice(token.start, token.end)
    }
    lastWord = token.kind === Token.Word ? sql.slice(token.start, token.end).toUpperCase() : ''
  }
  return out.trimEnd()
}

/** When tokens[open] starts a list of only literals and placeholders, the index of its `)`; else -1. */
function inListEnd(sql: string, tokens: Lexed[], open: number): number {
  let values = 0
  for (let t = open + 1; t < tokens.length; t++) {
    const token = tokens[t]!
    if (token.kind === Token.Space || token.kind === Token.Comment) continue
    if (token.kind === Token.Literal || token.kind === Token.Placeholder) { values++; continue }
    if (token.kind !== Token.Punct) return -1
    const c = sql.charCodeAt(token.start)
    if (c === 44 || c === 45 || c === 43) continue // , and signs
    return c === 41 && values > 0 ? t : -1
  }
  return -1
}

/** Keywords after which the next name is the statement's table, by operation. */
const tableAfter: Record<string, string[]> = {
  SELECT: ['FROM'],
  DELETE: ['FROM'],
  INSERT: ['INTO'],
  REPLACE: ['INTO'],
  UPDATE: ['UPDATE'],
  CREATE: ['TABLE'],
  DROP: ['TABLE'],
  ALTER: ['TABLE'],
  TRUNCATE: ['TRUNCATE', 'TABLE'],
  COPY: ['COPY'],
}

/** Words that mean a statement names more than one table (or a derived one). */
const multiTable = new Set(['JOIN', 'UNION', 'INTERSECT', 'EXCEPT', 'USING'])
const optionalWords = new Set(['IF', 'NOT', 'EXISTS', 'ONLY', 'TABLE', 'TEMPORARY', 'TEMP', 'UNLOGGED', 'IGNORE', 'LOW_PRIORITY', 'DELAYED', 'HIGH_PRIORITY', 'QUICK'])

/**
 * `db.operation.name`: the statement's first keyword, upper case (SELECT, INSERT, BEGIN ...).
 * `db.collection.name`: its table, only when it names exactly one (a join, a second FROM, a
 * subquery or a list of tables gives none), without quotes, schema kept (`public.accounts`).
 */
export function summarizeSql(sql: string, dialect: SqlDialect = 'postgresql'): { operation?: string; collection?: string } {
  const tokens = lex(sql, dialect).filter((t) => t.kind !== Token.Space && t.kind !== Token.Comment)
  let first = 0
  while (first < tokens.length && tokens[first]!.kind === Token.Punct && sql.charCodeAt(tokens[first]!.start) === 40) first++
  const head = tokens[first]
  if (head === undefined || head.kind !== Token.Word) return {}
  const operation = sql.slice(head.start, head.end).toUpperCase()
  const markers = tableAfter[operation]
  if (markers === undefined) return { operation }
  let collection: string | undefined
  for (let t = first; t < tokens.length; t++) {
    const token = tokens[t]!
    const word = token.kind === Token.Word ? sql.slice(token.start, token.end).toUpperCase() : ''
    if (multiTable.has(word)) return { operation }
    if (token.kind === Token.Punct && sql.charCodeAt(token.start) === 40 && isWordToken(sql, tokens[t - 1], 'FROM')) return { operation }
    if (!markers.includes(word)) continue
    const name = tableName(sql, tokens, t + 1)
    if (name === undefined) continue
    if (collection !== undefined && collection !== name.name) return { operation }
    collection = name.name
    // a comma after the table lists another one
    const after = tokens[name.next]
    if (after !== undefined && after.kind === Token.Punct && sql.charCodeAt(after.start) === 44) return { operation }
    t = name.next - 1
  }
  return collection === undefined ? { operation } : { operation, collection }
}

function isWordToken(sql: string, token: Lexed | undefined, word: string): boolean {
  return token !== undefined && token.kind === Token.Word && sql.slice(token.start, token.end).toUpperCase() === word
}

/** A possibly qualified, possibly quoted table name starting at tokens[t], after optional words. */
function tableName(sql: string, tokens: Lexed[], t: number): { name: string; next: number } | undefined {
  while (t < tokens.length && tokens[t]!.kind === Token.Word && optionalWords.has(sql.slice(tokens[t]!.start, tokens[t]!.end).toUpperCase())) t++
  const parts: string[] = []
  for (;;) {
    const token = tokens[t]
    if (token === undefined || (token.kind !== Token.Word && token.kind !== Token.QuotedName)) break
    parts.push(token.kind === Token.QuotedName ? sql.slice(token.start + 1, token.end - 1) : sql.slice(token.start, token.end))
    t++
    const dot = tokens[t]
    if (dot === undefined || dot.kind !== Token.Punct || sql.charCodeAt(dot.start) !== 46) break
    t++
  }
  return parts.length === 0 ? undefined : { name: parts.join('.'), next: t }
}
