/**
 * Parses a bpftrace program of Periscope's subset (issue 13) into `ast.ts` nodes: probes
 * (`tracepoint`, `uprobe`, `uretprobe`, `profile`, `interval`, `BEGIN`, `END`, several per
 * block), a `/filter/`, and statements separated by `;`: map and `$variable` assignments and
 * calls. Expressions follow bpftrace 0.17's grammar (`src/parser.yy`) and precedence.
 *
 * `parse(source)` throws a `BpftraceError` at the first error, located as bpftrace locates it.
 * Every construct bpftrace has and Periscope does not run yet (kprobes, `if`, loops, casts,
 * tuples, positional parameters, struct definitions ...) is refused by name, never skipped.
 */
import type { AttachPoint, BinaryOperator, Expression, Location, MapAccess, Probe, Program, RateUnit, Statement, UnaryOperator } from './ast.ts'
import { BpftraceError, BpftraceErrors } from './errors.ts'
import { tokenize, type Token } from './lexer.ts'

const span = (from: Location, to: Location): Location => ({ line: from.line, column: from.column, endLine: to.endLine, endColumn: to.endColumn })

/** How bison names a token in "syntax error, unexpected ..." */
function describe(token: Token): string {
  switch (token.type) {
    case 'eof': return 'end of file'
    case 'int': return 'integer'
    case 'string': return 'string'
    case 'ident': return 'identifier'
    case 'builtin': return 'builtin'
    case 'call': return 'call'
    case 'call_builtin': return 'call_builtin'
    case 'stack_mode': return 'stack_mode'
    case 'map': return 'map'
    case 'var': return 'variable'
    case 'path': return 'path'
    case 'param': return 'positional parameter'
    case 'endpred': return 'end predicate'
    case 'cpreproc': return 'preprocessor directive'
    default: return token.text
  }
}

const unsupported = (what: string, loc: Location) => new BpftraceError(`${what} is not supported by Periscope's bpftrace subset yet`, loc)

const PROVIDERS: Record<string, AttachPoint['provider']> = { tracepoint: 'tracepoint', t: 'tracepoint', uprobe: 'uprobe', u: 'uprobe', uretprobe: 'uretprobe', ur: 'uretprobe', profile: 'profile', p: 'profile', interval: 'interval', i: 'interval' }
const OTHER_PROVIDERS: Record<string, string> = {
  kprobe: 'kprobes are not available on this kernel (CONFIG_KPROBES is off); use a tracepoint', k: 'kprobes are not available on this kernel (CONFIG_KPROBES is off); use a tracepoint',
  kretprobe: 'kprobes are not available on this kernel (CONFIG_KPROBES is off); use a tracepoint', kr: 'kprobes are not available on this kernel (CONFIG_KPROBES is off); use a tracepoint',
  kfunc: 'this kernel refuses fentry programs; use a tracepoint', f: 'this kernel refuses fentry programs; use a tracepoint',
  kretfunc: 'this kernel refuses fexit programs; use a tracepoint', fr: 'this kernel refuses fexit programs; use a tracepoint',
}
const UNITS = new Set<RateUnit>(['hz', 's', 'ms', 'us'])

/** An attach point's text (`tracepoint:syscalls:sys_enter_*`) as a typed attach point. */
function attachPoint(text: string, loc: Location): AttachPoint {
  if (text === 'BEGIN' || text === 'END') return { provider: text, loc }
  const parts = text.split(':')
  const provider = PROVIDERS[parts[0]]
  if (!provider) {
    const reason = OTHER_PROVIDERS[parts[0]]
    if (reason) throw new BpftraceError(`${parts[0]} probes are not supported: ${reason}`, loc)
    if (parts.length === 1) throw new BpftraceError(`Invalid probe type: ${text}; Periscope runs tracepoint, uprobe, uretprobe, profile, interval, BEGIN and END probes`, loc)
    throw new BpftraceError(`Invalid probe type: ${parts[0]}; Periscope runs tracepoint, uprobe, uretprobe, profile, interval, BEGIN and END probes`, loc)
  }
  if (parts.length !== 3) throw new BpftraceError(`${parts[0]} probe type requires 2 arguments`, loc)
  if (provider === 'tracepoint') return { provider, category: parts[1], name: parts[2], loc }
  if (provider === 'uprobe' || provider === 'uretprobe') {
    if (/[+]/.test(parts[2])) throw unsupported('a uprobe offset', loc)
    return { provider, path: parts[1], symbol: parts[2], loc }
  }
  const unit = parts[1] as RateUnit
  if (!UNITS.has(unit)) throw new BpftraceError(`${parts[1]} is not an accepted unit of time`, loc)
  if (!/^[0-9]+$/.test(parts[2])) throw new BpftraceError(`Invalid rate of ${provider} probe: ${parts[2]}`, loc)
  return { provider, unit, value: Number(parts[2]), loc }
}

const BINARY_LEVELS: BinaryOperator[][] = [['||'], ['&&'], ['|'], ['^'], ['&'], ['==', '!='], ['<=', '>=', '<', '>'], ['<<', '>>'], ['+', '-'], ['*', '/', '%']]
const COMPOUND = new Set(['<<=', '>>=', '+=', '-=', '*=', '/=', '%=', '&=', '|=', '^='])
const ATTACH_TOKENS = new Set(['ident', 'builtin', 'call', 'call_builtin', 'stack_mode', 'string', 'path', 'int'])
const ATTACH_PUNCT = new Set([':', '.', '+', '*', '[', ']'])

class Parser {
  readonly #tokens: Token[]
  #at = 0

  /** `lexErrors` receives the errors the lexer reports and lexes past */
  constructor(source: string, lexErrors: BpftraceError[]) {
    this.#tokens = tokenize(source, lexErrors)
  }

  #peek(offset = 0): Token {
    return this.#tokens[Math.min(this.#at + offset, this.#tokens.length - 1)]
  }

  #next(): Token {
    const token = this.#peek()
    if (token.type !== 'eof') this.#at++
    return token
  }

  #is(text: string, offset = 0): boolean {
    const token = this.#peek(offset)
    return token.type === 'punct' && token.text === text
  }

  #unexpected(token = this.#peek()): BpftraceError {
    return new BpftraceError(`syntax error, unexpected ${describe(token)}`, token.loc)
  }

  /** The punctuation `text`; `expecting` adds bison's ", expecting ..." to the error. */
  #expect(text: string, expecting?: string): Token {
    if (!this.#is(text)) {
      const error = this.#unexpected()
      throw expecting ? new BpftraceError(`${error.message}, expecting ${expecting}`, error.loc) : error
    }
    return this.#next()
  }

  program(): Program {
    const probes: Probe[] = []
    const first = this.#peek()
    if (first.type === 'cpreproc' || first.type === 'struct') throw unsupported(first.type === 'cpreproc' ? '#include and other preprocessor directives' : 'struct definitions', first.loc)
    do probes.push(this.#probe())
    while (this.#peek().type !== 'eof')
    return { probes }
  }

  #probe(): Probe {
    const attachPoints = [this.#attachPoint()]
    while (this.#is(',')) {
      this.#next()
      attachPoints.push(this.#attachPoint())
    }
    let predicate: Expression | undefined
    if (this.#is('/')) {
      this.#next()
      predicate = this.#expression()
      if (this.#peek().type !== 'endpred') throw this.#unexpected()
      this.#next()
    }
    if (this.#peek().type === 'eof') throw new BpftraceError('unexpected end of file, expected {', span(attachPoints[0].loc, this.#peek().loc))
    const open = this.#expect('{')
    const statements = this.#statements()
    // a statement not followed by `;` must be the last one
    const close = this.#expect('}', '}')
    return { attachPoints, predicate, statements, loc: span(attachPoints[0].loc ?? open.loc, close.loc) }
  }

  #attachPoint(): AttachPoint {
    const tokens: Token[] = []
    for (;;) {
      const token = this.#peek()
      if (ATTACH_TOKENS.has(token.type) || (token.type === 'punct' && ATTACH_PUNCT.has(token.text))) tokens.push(this.#next())
      else if (token.type === 'param') throw unsupported('a positional parameter', token.loc)
      else break
    }
    if (tokens.length === 0) throw this.#unexpected()
    const text = tokens.map((t) => (t.type === 'string' ? `"${t.text}"` : t.text)).join('')
    return attachPoint(text, span(this.#previousEnd(tokens[0]), tokens[tokens.length - 1].loc))
  }

  /**
   * Where the token before `token` ended, 1:1 at the start: bison locates the empty rule an
   * attach point starts with there, so bpftrace's attach point locations start there.
   */
  #previousEnd(token: Token): Location {
    const index = this.#tokens.indexOf(token)
    if (index === 0) return { line: 1, column: 1, endLine: 1, endColumn: 1 }
    const previous = this.#tokens[index - 1].loc
    return { line: previous.endLine, column: previous.endColumn, endLine: previous.endLine, endColumn: previous.endColumn }
  }

  #statements(): Statement[] {
    const statements: Statement[] = []
    while (!this.#is('}') && this.#peek().type !== 'eof') {
      const token = this.#peek()
      if (token.type === 'keyword') throw unsupported(`'${token.text}'`, token.loc)
      statements.push(this.#statement())
      if (!this.#is(';')) break
      this.#next()
    }
    return statements
  }

  #statement(): Statement {
    const target = this.#expression()
    const token = this.#peek()
    const compound = token.type === 'punct' && COMPOUND.has(token.text)
    if (!this.#is('=') && !compound) return { kind: 'expression', expression: target, loc: target.loc }
    if (target.kind !== 'map' && target.kind !== 'variable') throw this.#unexpected()
    const assign = this.#next()
    let value = this.#expression()
    // `@x += e` is `@x = @x + e`, located as bison locates the compound statement
    if (compound) value = { kind: 'binary', operator: assign.text.slice(0, -1) as BinaryOperator, left: target, right: value, loc: assign.loc }
    const loc = compound ? span(target.loc, value.loc) : assign.loc
    return target.kind === 'map' ? { kind: 'assignMap', map: target, value, compound, loc } : { kind: 'assignVariable', variable: target, value, compound, loc }
  }

  #expression(): Expression {
    const condition = this.#binary(0)
    if (!this.#is('?')) return condition
    this.#next()
    const then = this.#expression()
    this.#expect(':')
    const otherwise = this.#expression()
    return { kind: 'ternary', condition, then, otherwise, loc: span(condition.loc, otherwise.loc) }
  }

  #binary(level: number): Expression {
    if (level === BINARY_LEVELS.length) return this.#unary()
    let left = this.#binary(level + 1)
    for (;;) {
      const token = this.#peek()
      const operator = BINARY_LEVELS[level].find((op) => token.type === 'punct' && token.text === op)
      if (!operator) return left
      this.#next()
      const right = this.#binary(level + 1)
      left = { kind: 'binary', operator, left, right, loc: span(left.loc, right.loc) }
    }
  }

  #unary(): Expression {
    const token = this.#peek()
    if (token.type === 'punct' && (token.text === '++' || token.text === '--')) {
      this.#next()
      const target = this.#peek().type === 'map' || this.#peek().type === 'var' ? this.#primary() : undefined
      if (target?.kind !== 'map' && target?.kind !== 'variable') throw new BpftraceError(`The ${token.text} operator must be applied to a map or variable`, token.loc)
      return { kind: 'increment', operator: token.text, target, prefix: true, loc: token.loc }
    }
    if (token.type === 'punct' && token.text === '*') throw unsupported('pointer dereference', token.loc)
    if (token.type === 'punct' && (token.text === '!' || token.text === '-' || token.text === '~')) {
      this.#next()
      if (token.text === '-' && this.#peek().type === 'int') {
        const int = this.#next()
        return { kind: 'integer', value: BigInt.asIntN(64, -int.value!), loc: span(token.loc, int.loc) }
      }
      const operand = this.#unary()
      return { kind: 'unary', operator: token.text as UnaryOperator, operand, loc: span(token.loc, operand.loc) }
    }
    if (this.#is('(') && this.#peek(1).type === 'ident' && (this.#is(')', 2) || this.#is('*', 2))) throw unsupported('a cast', span(token.loc, this.#peek(2).loc))
    if (this.#is('(') && this.#peek(1).type === 'struct') throw unsupported('a cast', token.loc)
    return this.#postfix(this.#primary())
  }

  #postfix(expression: Expression): Expression {
    for (;;) {
      const token = this.#peek()
      if (this.#is('.') || this.#is('->')) {
        this.#next()
        const field = this.#next()
        if (field.type === 'int') throw unsupported('a tuple', token.loc)
        if (!['ident', 'builtin', 'call', 'call_builtin', 'stack_mode'].includes(field.type)) throw this.#unexpected(field)
        expression = { kind: 'field', base: expression, field: field.text, arrow: token.text === '->', loc: span(expression.loc, field.loc) }
      } else if (this.#is('[')) {
        throw unsupported('array indexing', token.loc)
      } else if ((this.#is('++') || this.#is('--')) && (expression.kind === 'map' || expression.kind === 'variable')) {
        this.#next()
        expression = { kind: 'increment', operator: token.text as '++' | '--', target: expression, prefix: false, loc: token.loc }
      } else {
        return expression
      }
    }
  }

  #arguments(): { args: Expression[]; close: Token } {
    this.#expect('(')
    const args: Expression[] = []
    if (!this.#is(')')) {
      args.push(this.#expression())
      while (this.#is(',')) {
        this.#next()
        args.push(this.#expression())
      }
    }
    return { args, close: this.#expect(')') }
  }

  #primary(): Expression {
    const token = this.#next()
    switch (token.type) {
      case 'int':
        return { kind: 'integer', value: token.value!, loc: token.loc }
      case 'string':
        return { kind: 'string', value: token.text, loc: token.loc }
      case 'builtin':
      case 'call_builtin':
      case 'call':
      case 'ident':
      case 'stack_mode': {
        if (!this.#is('(')) {
          if (token.type === 'builtin' || token.type === 'call_builtin') return { kind: 'builtin', name: token.text, loc: token.loc }
          if (token.type === 'call') throw this.#unexpected()
          // a stack mode is only an argument of ustack()/kstack(): the checker refuses it elsewhere
          if (token.type === 'stack_mode') return { kind: 'builtin', name: token.text, loc: token.loc }
          throw new BpftraceError(`Unknown identifier: '${token.text}'`, token.loc)
        }
        if (token.type !== 'call' && token.type !== 'call_builtin') throw new BpftraceError(`Unknown function: ${token.text}`, token.loc)
        const { args, close } = this.#arguments()
        return { kind: 'call', name: token.text, args, loc: span(token.loc, close.loc) }
      }
      case 'map': {
        const map: MapAccess = { kind: 'map', name: token.text, keys: [], loc: token.loc }
        if (this.#is('[')) {
          this.#next()
          map.keys.push(this.#expression())
          while (this.#is(',')) {
            this.#next()
            map.keys.push(this.#expression())
          }
          map.loc = span(token.loc, this.#expect(']').loc)
        }
        return map
      }
      case 'var':
        return { kind: 'variable', name: token.text, loc: token.loc }
      case 'param':
        throw unsupported('a positional parameter', token.loc)
      case 'punct':
        if (token.text === '(') {
          const inner = this.#expression()
          if (this.#is(',')) throw unsupported('a tuple', this.#peek().loc)
          this.#expect(')')
          return inner
        }
        throw this.#unexpected(token)
      default:
        throw this.#unexpected(token)
    }
  }
}

/**
 * The program's syntax tree. Throws `BpftraceErrors`: the lexer's errors (an unterminated
 * string) and then the first syntax error, as bpftrace reports them.
 */
export function parse(source: string): Program {
  const lexErrors: BpftraceError[] = []
  let program: Program | undefined
  let failure: BpftraceError | undefined
  try {
    program = new Parser(source, lexErrors).program()
  } catch (error) {
    if (!(error instanceof BpftraceError)) throw error
    failure = error
  }
  const errors = [...lexErrors, ...(failure ? [failure] : [])]
  if (errors.length || !program) throw new BpftraceErrors(errors)
  return program
}
