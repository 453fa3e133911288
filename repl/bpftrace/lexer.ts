/**
 * Tokens of a bpftrace program, cut as bpftrace 0.17's flex lexer (`src/lexer.l`) cuts them, so
 * the parser sees the same tokens at the same locations:
 * - `:name` is one `path` token (so `tracepoint:syscalls:sys_enter_openat` is an identifier
 *   and two paths), and `a?b:c` does not parse, as in bpftrace;
 * - `/` is `endpred` when white space and then `/` or `{` follow it, else division;
 * - a token's location starts where the last run of white space ended.
 * Constructs outside Periscope's subset (`struct` casts, `#include`, `$1` parameters) are
 * lexed and refused by the parser with their location.
 */
import type { Location } from './ast.ts'
import { BpftraceError } from './errors.ts'

export type TokenType =
  | 'int' | 'string' | 'ident' | 'builtin' | 'call' | 'call_builtin' | 'stack_mode' | 'map' | 'var' | 'path' | 'param'
  | 'keyword' | 'struct' | 'cpreproc' | 'endpred' | 'punct' | 'eof'

export interface Token {
  type: TokenType
  /** the source text; for strings, the value with escapes applied */
  text: string
  /** integers only */
  value?: bigint
  loc: Location
}

const BUILTINS = new Set(['args', 'cgroup', 'comm', 'cpid', 'numaid', 'cpu', 'ctx', 'curtask', 'elapsed', 'func', 'gid', 'nsecs', 'pid', 'probe', 'rand', 'retval', 'tid', 'uid', 'username', ...Array.from({ length: 10 }, (_, i) => `arg${i}`), ...Array.from({ length: 10 }, (_, i) => `sarg${i}`)])
const CALLS = new Set(['avg', 'buf', 'cat', 'cgroupid', 'clear', 'count', 'delete', 'exit', 'hist', 'join', 'kaddr', 'kptr', 'ksym', 'lhist', 'macaddr', 'max', 'min', 'ntop', 'override', 'print', 'printf', 'cgroup_path', 'reg', 'signal', 'sizeof', 'stats', 'str', 'strerror', 'strftime', 'strncmp', 'strcontains', 'sum', 'system', 'time', 'uaddr', 'uptr', 'usym', 'zero', 'path', 'unwatch', 'bswap', 'skboutput', 'pton', 'debugf'])
const KEYWORDS = new Set(['if', 'else', 'unroll', 'while', 'for', 'return', 'continue', 'break'])
// longest first: the lexer takes the longest operator that matches
const OPERATORS = ['<<=', '>>=', '+=', '-=', '*=', '/=', '%=', '&=', '|=', '^=', '==', '!=', '<=', '>=', '<<', '>>', '&&', '||', '++', '--', '->', ':', ';', '{', '}', '[', ']', '(', ')', ',', '=', '<', '>', '+', '-', '*', '/', '%', '&', '|', '^', '!', '~', '.', '?']

const IDENT = /[_a-zA-Z][_a-zA-Z0-9]*/y
const INT = /(?:0[xX][0-9a-fA-F]+|[0-9](?:[0-9_]*[0-9])?(?:[eE][0-9](?:[0-9_]*[0-9])?)?(?:[uU]|[uU]?[lL]?[lL])?)/y
const PATH = /:(?:\\.|[_\-./a-zA-Z0-9#*])+/y
const ENDPRED = /\/[ \t\n\r]*[/{]/y

/** bpftrace's `int_parser::to_uint`: underscores, a C suffix and `1e6` exponents allowed. */
function parseInteger(text: string, loc: Location): bigint {
  if (/^0[xX]/.test(text)) return BigInt(text)
  const digits = text.replace(/[uUlL]+$/, '').replaceAll('_', '')
  const [base, exponent] = digits.split(/[eE]/)
  const value = exponent === undefined ? BigInt(base) : BigInt(base) * 10n ** BigInt(exponent)
  if (value >= 1n << 64n) throw new BpftraceError(`'${text}' is out of range of uint64`, loc)
  return value
}

class Cursor {
  line = 1
  column = 1
  beginLine = 1
  beginColumn = 1

  /** Moves over consumed text, counting lines as bpftrace does (each \r and \n is a line). */
  advance(text: string, newlines = false): void {
    if (newlines) {
      this.line += text.length
      this.column = 1
    } else {
      this.column += text.length
    }
  }

  step(): void {
    this.beginLine = this.line
    this.beginColumn = this.column
  }

  location(): Location {
    return { line: this.beginLine, column: this.beginColumn, endLine: this.line, endColumn: this.column }
  }
}

/**
 * A string literal from its opening quote. One cut by a newline or the end of the file is
 * reported to `errors` and gives no token, and lexing goes on after it, as in bpftrace.
 */
function readString(source: string, start: number, cursor: Cursor, errors: BpftraceError[]): { value: string; end: number; terminated: boolean } {
  let value = ''
  let i = start + 1
  cursor.advance('"')
  for (;;) {
    if (i >= source.length) {
      // bpftrace reports it and lets the parser meet the end of file too
      errors.push(new BpftraceError('unterminated string', cursor.location()))
      return { value, end: i, terminated: false }
    }
    const char = source[i]
    if (char === '"') {
      cursor.advance(char)
      return { value, end: i + 1, terminated: true }
    }
    if (char === '\n') {
      cursor.advance(char)
      errors.push(new BpftraceError('unterminated string', cursor.location()))
      cursor.advance(char, true)
      cursor.step()
      return { value, end: i + 1, terminated: false }
    }
    if (char !== '\\') {
      value += char
      cursor.advance(char)
      i++
      continue
    }
    const escape = /^\\(?:[ntr"\\]|[0-7]{1,3}|[xX][0-9a-fA-F]{1,2}|.)/s.exec(source.slice(i, i + 4))![0]
    cursor.advance(escape)
    const body = escape.slice(1)
    if (body === 'n') value += '\n'
    else if (body === 't') value += '\t'
    else if (body === 'r') value += '\r'
    else if (body === '"' || body === '\\') value += body
    else if (/^[0-7]/.test(body)) {
      const code = parseInt(body, 8)
      if (code > 255) throw new BpftraceError(`octal escape sequence out of range '${escape}'`, cursor.location())
      value += String.fromCharCode(code)
    } else if (/^[xX]/.test(body)) value += String.fromCharCode(parseInt(body.slice(1), 16))
    else throw new BpftraceError(`invalid escape character '${escape}'`, cursor.location())
    i += escape.length
  }
}

/** Skips white space and comments; returns where the next token starts. */
function skipSpace(source: string, i: number, cursor: Cursor): number {
  for (;;) {
    const space = /^(?:[ \t]+|[\n\r]+)/.exec(source.slice(i, i + 256))?.[0]
    if (space) {
      cursor.advance(space, space[0] === '\n' || space[0] === '\r')
      cursor.step()
      i += space.length
      continue
    }
    if (source.startsWith('//', i) || (i === 0 && source.startsWith('#!'))) {
      const end = source.indexOf('\n', i)
      const comment = source.slice(i, end === -1 ? source.length : end)
      cursor.advance(comment)
      i += comment.length
      continue
    }
    if (source.startsWith('/*', i)) {
      const end = source.indexOf('*/', i + 2)
      if (end === -1) throw new BpftraceError('end of file during comment', cursor.location())
      for (const part of source.slice(i, end + 2).split(/(\n)/)) {
        if (part === '\n') {
          cursor.advance(part, true)
          cursor.step()
        } else cursor.advance(part)
      }
      i = end + 2
      continue
    }
    return i
  }
}

/**
 * The tokens, ending with `eof`. Errors bpftrace reports and lexes past (an unterminated string
 * at the end of the file) are pushed to `errors`; the others throw.
 */
export function tokenize(source: string, errors: BpftraceError[] = []): Token[] {
  const tokens: Token[] = []
  const cursor = new Cursor()
  let i = 0
  const match = (pattern: RegExp) => {
    pattern.lastIndex = i
    return pattern.exec(source)?.[0]
  }
  const push = (type: TokenType, text: string, consumed = text, value?: bigint) => {
    cursor.advance(consumed)
    i += consumed.length
    tokens.push({ type, text, loc: cursor.location(), ...(value === undefined ? {} : { value }) })
  }
  for (;;) {
    i = skipSpace(source, i, cursor)
    if (i >= source.length) {
      tokens.push({ type: 'eof', text: '', loc: cursor.location() })
      return tokens
    }
    const char = source[i]
    const word = match(IDENT)
    if (char === '"') {
      const { value, end, terminated } = readString(source, i, cursor, errors)
      i = end
      if (terminated) tokens.push({ type: 'string', text: value, loc: cursor.location() })
    } else if (word !== undefined) {
      const type: TokenType = word === 'bpftrace' || word === 'perf' ? 'stack_mode' : BUILTINS.has(word) ? 'builtin' : CALLS.has(word) ? 'call' : word === 'kstack' || word === 'ustack' ? 'call_builtin' : KEYWORDS.has(word) ? 'keyword' : word === 'struct' || word === 'union' || word === 'enum' ? 'struct' : 'ident'
      push(type, word)
    } else if (/[0-9]/.test(char)) {
      const text = match(INT)!
      const loc = { ...cursor.location(), endLine: cursor.line, endColumn: cursor.column + text.length }
      push('int', text, text, parseInteger(text, loc))
    } else if (char === '@') {
      IDENT.lastIndex = i + 1
      push('map', `@${IDENT.exec(source)?.[0] ?? ''}`)
    } else if (char === '$') {
      const rest = source.slice(i + 1)
      const name = /^[_a-zA-Z][_a-zA-Z0-9]*/.exec(rest)?.[0]
      const parameter = /^(?:[0-9]+|#)/.exec(rest)?.[0]
      if (name !== undefined) push('var', `$${name}`)
      else if (parameter !== undefined) push('param', `$${parameter}`)
      else {
        push('punct', '$')
        throw new BpftraceError(`invalid character '$'`, cursor.location())
      }
    } else if (char === ':' && match(PATH) !== undefined) {
      push('path', match(PATH)!)
    } else if (char === '/' && match(ENDPRED) !== undefined) {
      push('endpred', '/')
    } else if (char === '#') {
      const end = source.indexOf('\n', i)
      push('cpreproc', source.slice(i, end === -1 ? source.length : end))
    } else {
      const operator = OPERATORS.find((op) => source.startsWith(op, i))
      if (operator === undefined) {
        push('punct', char)
        throw new BpftraceError(`invalid character '${char}'`, cursor.location())
      }
      push('punct', operator)
    }
  }
}
