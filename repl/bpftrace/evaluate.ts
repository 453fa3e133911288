/**
 * Runs a checked bpftrace program over decoded events in user space: each probe's filter,
 * `$variables`, map assignments and aggregations (through an `Aggregator`), `printf`,
 * `print`, `clear`, `delete` and `exit()`.
 *
 * The capture side (the next step: `generic.bpf.c` for tracepoints, uprobes, perf events)
 * decodes each record into a `TraceEvent` and calls `fire(probeIndex, event)`. `begin()` runs
 * the BEGIN probes before the first event and `end()` runs the END probes; the caller then
 * prints the maps with `exitText(aggregator.snapshots())` (or `exitJson`), as bpftrace does.
 *
 * `printf`, `print`, `clear` and `exit` are asynchronous in bpftrace: the kernel sends them to
 * bpftrace, which acts on them after the probe has run, in order. So here they take effect in
 * order once the probe's statements have run: `print(@x)` shows the map as the whole probe left
 * it, and a `clear(@x)` followed by updates in the same probe clears those updates too, as in
 * bpftrace. `delete` acts at once, in the kernel there.
 *
 * The AST is compiled once into closures, so an event costs a walk over closures, not over
 * the tree. Integers are bigints wrapped to 64 bits as in BPF; division by zero gives 0 as it
 * does in BPF.
 */
import type { Aggregator } from './aggregate.ts'
import type { Expression, Statement } from './ast.ts'
import type { CheckedProgram, ValueType } from './check.ts'
import type { KeyPart, MapSnapshot } from '../maps.ts'
import { formatPrintf, type PrintfArg } from '../printf.ts'
import type { TaskFields } from '../../runtime/protocols/tracepoint.ts'

/** One decoded event, as the capture layer hands it over. */
export interface TraceEvent extends TaskFields {
  /** tracepoint fields by name; a `char *` read with str() arrives as the string it points to */
  args?: Record<string, bigint | number | string>
  /** uretprobe return value */
  retval?: bigint
  /** uprobe argument registers: arg0, arg1, ... */
  regs?: bigint[]
  /** the user and kernel stacks (profile samples, and probes that read them), innermost frame first; shared between events, so read-only */
  ustack?: readonly StackFrame[]
  kstack?: readonly StackFrame[]
}

/** One named frame of a sampled stack. */
export interface StackFrame {
  address: bigint
  /** `function+offset` as bpftrace names a frame, or `0x<address>` where no symbol holds it */
  symbol: string
  /** the file mapping it, `[kernel.kallsyms]` for the kernel, `[unknown]` where none does */
  module: string
}

type StackExpression = Extract<Expression, { kind: 'builtin' | 'call' }>

/** `ustack`, `kstack`, `ustack(perf)`, `kstack(5)`, `ustack(perf, 5)` */
function isStack(expression: Expression): boolean {
  return (expression.kind === 'builtin' || expression.kind === 'call') && (expression.name === 'ustack' || expression.name === 'kstack')
}

/**
 * A stack as bpftrace 0.17 prints it: a line per frame after a newline, `function+offset`
 * indented by `indent` spaces (8 in printf, 4 as a map key), or in perf mode a tab, the address
 * in hex, the name and the module in parentheses.
 */
function stackText(frames: readonly StackFrame[] | undefined, perf: boolean, limit: number, indent: string): string {
  const count = Math.min(frames?.length ?? 0, limit)
  // bpftrace prints an empty stack (a kernel stack of user code) as nothing at all
  if (count === 0) return ''
  let text = '\n'
  for (let i = 0; i < count; i++) {
    const frame = frames![i]!
    text += perf ? `\t${frame.address.toString(16)} ${frame.symbol} (${frame.module})\n` : `${indent}${frame.symbol}\n`
  }
  return text
}

export interface ProgramOutput {
  printf(text: string): void
  /** print(@map) */
  print(map: MapSnapshot): void
  /** exit() was called: stop delivering events, then run END and print the maps */
  exit(): void
}

type Value = bigint | string
/** one probe run: its event, its `$variables`, and its asynchronous actions in call order */
type Scope = { event: TraceEvent; variables: Map<string, Value>; deferred: (() => void)[] }
type Compiled = (scope: Scope) => Value
type Action = (scope: Scope) => void

const wrap = (type: ValueType | undefined, value: bigint) => (type?.kind === 'int' && !type.signed ? BigInt.asUintN(64, value) : BigInt.asIntN(64, value))
const truthy = (value: Value) => (typeof value === 'string' ? value.length > 0 : value !== 0n)
const bool = (value: boolean) => (value ? 1n : 0n)

/** A string cut to a bpftrace string of `size` bytes (its last byte the terminating NUL). */
function fitString(value: string, size: number): string {
  // the common case (it fits) measures without copying
  if (value.length < size && Buffer.byteLength(value) < size) return value
  return Buffer.from(value).subarray(0, size - 1).toString()
}

export class Evaluator {
  readonly #checked: CheckedProgram
  readonly #aggregator: Aggregator
  readonly #output: ProgramOutput
  readonly #startNs: bigint
  readonly #probes: { filter: Compiled | undefined; actions: Action[] }[]
  #exited = false

  /** `startNs`: when the program started, nanoseconds since boot (`elapsed` counts from it). */
  constructor(checked: CheckedProgram, aggregator: Aggregator, output: ProgramOutput, startNs: bigint) {
    this.#checked = checked
    this.#aggregator = aggregator
    this.#output = output
    this.#startNs = startNs
    this.#probes = checked.program.probes.map((probe) => ({
      filter: probe.predicate ? this.#expression(probe.predicate) : undefined,
      actions: probe.statements.map((statement) => this.#statement(statement)),
    }))
  }

  get exited(): boolean {
    return this.#exited
  }

  /** Runs probe `index` (its position in the program) for one event. */
  fire(index: number, event: TraceEvent): void {
    if (this.#exited) return
    const probe = this.#probes[index]
    const scope: Scope = { event, variables: new Map(), deferred: [] }
    if (probe.filter && !truthy(probe.filter(scope))) return
    for (const action of probe.actions) {
      action(scope)
      if (this.#exited) break
    }
    for (const deferred of scope.deferred) deferred()
  }

  #fireSpecial(provider: 'BEGIN' | 'END', event: TraceEvent): void {
    this.#checked.program.probes.forEach((probe, i) => {
      if (probe.attachPoints.some((p) => p.provider === provider)) this.fire(i, event)
    })
  }

  begin(event: TraceEvent): void {
    this.#fireSpecial('BEGIN', event)
  }

  /** Runs the END probes even after exit(), as bpftrace does. */
  end(event: TraceEvent): void {
    this.#exited = false
    this.#fireSpecial('END', event)
    this.#exited = true
  }

  #mapId(name: string): number {
    return this.#checked.mapIds.get(name)!
  }

  #keys(keys: Expression[]): (scope: Scope) => KeyPart[] {
    const compiled = keys.map((key) => {
      if (isStack(key)) return this.#stack(key as StackExpression, '    ')
      const value = this.#expression(key)
      const type = this.#checked.types.get(key)
      return type?.kind === 'string' ? (scope: Scope) => fitString(value(scope) as string, type.size) : value
    })
    return (scope) => compiled.map((key) => key(scope))
  }

  #statement(statement: Statement): Action {
    if (statement.kind === 'assignVariable') {
      const value = this.#expression(statement.value)
      const name = statement.variable.name
      return (scope) => void scope.variables.set(name, value(scope))
    }
    if (statement.kind === 'expression') {
      const value = this.#expression(statement.expression)
      return (scope) => void value(scope)
    }
    const map = this.#mapId(statement.map.name)
    const keys = this.#keys(statement.map.keys)
    const aggregator = this.#aggregator
    const call = statement.value.kind === 'call' ? statement.value : undefined
    const argument = call?.args[0] ? this.#expression(call.args[0]) : undefined
    const int = (scope: Scope) => argument!(scope) as bigint
    switch (call?.name) {
      case 'count': return (scope) => aggregator.count(map, keys(scope))
      case 'sum': return (scope) => aggregator.sum(map, keys(scope), int(scope))
      case 'min': return (scope) => aggregator.min(map, keys(scope), int(scope))
      case 'max': return (scope) => aggregator.max(map, keys(scope), int(scope))
      case 'avg': case 'stats': return (scope) => aggregator.avg(map, keys(scope), int(scope))
      case 'hist': return (scope) => aggregator.hist(map, keys(scope), int(scope))
      case 'lhist': return (scope) => aggregator.lhist(map, keys(scope), int(scope))
    }
    const value = this.#expression(statement.value)
    const type = this.#checked.types.get(statement.value)
    return (scope) => aggregator.assign(map, keys(scope), type?.kind === 'string' ? fitString(value(scope) as string, 64) : value(scope))
  }

  #expression(expression: Expression): Compiled {
    const type = this.#checked.types.get(expression)
    switch (expression.kind) {
      case 'integer': {
        const value = expression.value
        return () => value
      }
      case 'string': {
        const value = expression.value
        return () => value
      }
      case 'builtin':
        if (isStack(expression)) return this.#stack(expression as StackExpression, '        ')
        return this.#builtin(expression.name)
      case 'field': {
        const name = expression.field
        return ({ event }) => {
          const value = event.args?.[name]
          if (value === undefined) throw new Error(`the event has no field ${name}: the decoder and the program disagree`)
          return typeof value === 'number' ? BigInt(value) : value
        }
      }
      case 'map': {
        const map = this.#mapId(expression.name)
        const keys = this.#keys(expression.keys)
        return (scope) => this.#aggregator.read(map, keys(scope))
      }
      case 'variable': {
        const name = expression.name
        return ({ variables }) => variables.get(name) ?? 0n
      }
      case 'unary': {
        const operand = this.#expression(expression.operand)
        if (expression.operator === '!') return (scope) => bool(!truthy(operand(scope)))
        if (expression.operator === '-') return (scope) => BigInt.asIntN(64, -(operand(scope) as bigint))
        return (scope) => wrap(type, ~(operand(scope) as bigint))
      }
      case 'binary':
        return this.#binary(expression)
      case 'ternary': {
        const condition = this.#expression(expression.condition)
        const then = this.#expression(expression.then)
        const otherwise = this.#expression(expression.otherwise)
        return (scope) => (truthy(condition(scope)) ? then(scope) : otherwise(scope))
      }
      case 'call':
        return this.#call(expression)
      case 'increment':
        return this.#increment(expression)
    }
  }

  #increment(expression: Extract<Expression, { kind: 'increment' }>): Compiled {
    const step = expression.operator === '++' ? 1n : -1n
    const prefix = expression.prefix
    const target = expression.target
    const type = this.#checked.types.get(target)
    if (target.kind === 'variable') {
      const name = target.name
      return ({ variables }) => {
        const old = (variables.get(name) ?? 0n) as bigint
        const next = wrap(type, old + step)
        variables.set(name, next)
        return prefix ? next : old
      }
    }
    const map = this.#mapId(target.name)
    const keys = this.#keys(target.keys)
    return (scope) => {
      const key = keys(scope)
      const old = this.#aggregator.read(map, key) as bigint
      const next = wrap(type, old + step)
      this.#aggregator.assign(map, key, next)
      return prefix ? next : old
    }
  }

  #builtin(name: string): Compiled {
    switch (name) {
      case 'pid': return ({ event }) => BigInt(event.pid)
      case 'tid': return ({ event }) => BigInt(event.tid)
      case 'uid': return ({ event }) => BigInt(event.uid)
      case 'gid': return ({ event }) => BigInt(event.gid)
      case 'cpu': return ({ event }) => BigInt(event.cpu)
      case 'comm': return ({ event }) => fitString(event.comm, 16)
      case 'nsecs': return ({ event }) => event.nsecs
      case 'elapsed': return ({ event }) => BigInt.asUintN(64, event.nsecs - this.#startNs)
      case 'retval': return ({ event }) => BigInt.asUintN(64, event.retval ?? 0n)
    }
    const register = Number(name.slice(3))
    return ({ event }) => BigInt.asUintN(64, event.regs?.[register] ?? 0n)
  }

  #binary(expression: Extract<Expression, { kind: 'binary' }>): Compiled {
    const left = this.#expression(expression.left)
    const right = this.#expression(expression.right)
    const leftType = this.#checked.types.get(expression.left)
    const rightType = this.#checked.types.get(expression.right)
    const type = this.#checked.types.get(expression)
    const signed = leftType?.kind === 'int' && rightType?.kind === 'int' && leftType.signed && rightType.signed
    // BPF compares unsigned unless both sides are signed
    const operands = (scope: Scope): [bigint, bigint] => {
      const a = left(scope) as bigint
      const b = right(scope) as bigint
      return signed ? [a, b] : [BigInt.asUintN(64, a), BigInt.asUintN(64, b)]
    }
    // strings compare as text, integers as their 64 bits
    const equal = (scope: Scope) => {
      const a = left(scope)
      const b = right(scope)
      return typeof a === 'string' ? a === b : BigInt.asUintN(64, a) === BigInt.asUintN(64, b as bigint)
    }
    switch (expression.operator) {
      case '&&': return (scope) => bool(truthy(left(scope)) && truthy(right(scope)))
      case '||': return (scope) => bool(truthy(left(scope)) || truthy(right(scope)))
      case '==': return (scope) => bool(equal(scope))
      case '!=': return (scope) => bool(!equal(scope))
      case '<': return (scope) => { const [a, b] = operands(scope); return bool(a < b) }
      case '<=': return (scope) => { const [a, b] = operands(scope); return bool(a <= b) }
      case '>': return (scope) => { const [a, b] = operands(scope); return bool(a > b) }
      case '>=': return (scope) => { const [a, b] = operands(scope); return bool(a >= b) }
      case '+': return (scope) => wrap(type, (left(scope) as bigint) + (right(scope) as bigint))
      case '-': return (scope) => wrap(type, (left(scope) as bigint) - (right(scope) as bigint))
      case '*': return (scope) => wrap(type, (left(scope) as bigint) * (right(scope) as bigint))
      case '/': return (scope) => { const [a, b] = operands(scope); return b === 0n ? 0n : wrap(type, a / b) }
      case '%': return (scope) => { const [a, b] = operands(scope); return b === 0n ? 0n : wrap(type, a % b) }
      case '&': return (scope) => wrap(type, (left(scope) as bigint) & (right(scope) as bigint))
      case '|': return (scope) => wrap(type, (left(scope) as bigint) | (right(scope) as bigint))
      case '^': return (scope) => wrap(type, (left(scope) as bigint) ^ (right(scope) as bigint))
      case '<<': return (scope) => wrap(type, (left(scope) as bigint) << ((right(scope) as bigint) & 63n))
      case '>>': return (scope) => { const [a, b] = operands(scope); return wrap(type, a >> (b & 63n)) }
    }
  }

  /** `ustack`/`kstack` of a profile sample, printed with `indent` (see stackText) */
  #stack(expression: StackExpression, indent: string): Compiled {
    const args = expression.kind === 'call' ? expression.args : []
    const perf = args.some((arg) => arg.kind === 'builtin' && arg.name === 'perf')
    const limitArg = args.find((arg) => arg.kind === 'integer')
    const limit = limitArg ? Number(limitArg.value) : Infinity
    return expression.name === 'ustack'
      ? ({ event }) => stackText(event.ustack, perf, limit, indent)
      : ({ event }) => stackText(event.kstack, perf, limit, indent)
  }

  #call(call: Extract<Expression, { kind: 'call' }>): Compiled {
    const args = call.args
    if (isStack(call)) return this.#stack(call, '        ')
    switch (call.name) {
      case 'printf': {
        const format = (args[0] as { value: string }).value
        const values = args.slice(1).map((arg) => {
          const value = this.#expression(arg)
          const type = this.#checked.types.get(arg)
          return type?.kind === 'string' ? (scope: Scope): PrintfArg => ({ type: 'string', value: value(scope) as string }) : (scope: Scope): PrintfArg => ({ type: 'integer', value: value(scope) as bigint })
        })
        return (scope) => {
          // the arguments are read now, the text printed with the probe's other output
          const text = formatPrintf(format, values.map((value) => value(scope)))
          scope.deferred.push(() => this.#output.printf(text))
          return 0n
        }
      }
      case 'str': {
        const value = this.#expression(args[0])
        const size = (this.#checked.types.get(call) as { size: number }).size
        return (scope) => {
          const text = value(scope)
          if (typeof text !== 'string') throw new Error('str() of a pointer needs the string copied in the kernel with the event; the capture layer must decode this field as a string')
          return fitString(text, size)
        }
      }
      case 'exit':
        return (scope) => {
          this.#exited = true
          scope.deferred.push(() => this.#output.exit())
          return 0n
        }
      case 'print': {
        const map = this.#mapId((args[0] as { name: string }).name)
        return (scope) => {
          scope.deferred.push(() => this.#output.print(this.#aggregator.snapshot(map)))
          return 0n
        }
      }
      case 'clear': {
        const map = this.#mapId((args[0] as { name: string }).name)
        return (scope) => {
          scope.deferred.push(() => this.#aggregator.clear(map))
          return 0n
        }
      }
      case 'delete': {
        const target = args[0] as Extract<Expression, { kind: 'map' }>
        const map = this.#mapId(target.name)
        const keys = this.#keys(target.keys)
        return (scope) => {
          this.#aggregator.delete(map, keys(scope))
          return 0n
        }
      }
    }
    throw new Error(`${call.name}() reached the evaluator: check() should have refused it`)
  }
}
