/**
 * The semantic pass over a parsed program: types every expression as bpftrace 0.17 types it,
 * declares each map's shape (the kind of value, key types, lhist bounds) for the aggregator and
 * printers, and reports what bpftrace would refuse, with its messages and locations, plus what
 * Periscope does not run yet. `check(program, { tracepointFields })` throws `BpftraceErrors`
 * with every error found; `tracepointFields` resolves `args.field` from a tracefs format (the
 * REPL passes a reader of /sys/kernel/tracing; without it fields are typed int64).
 */
import type { AttachPoint, Expression, Location, MapAccess, Probe, Program, Statement } from './ast.ts'
import { BpftraceError, BpftraceErrors } from './errors.ts'
import type { KeyType, MapKind, MapShape } from '../maps.ts'
import { conversions } from '../printf.ts'

export type ValueType =
  | { kind: 'int'; signed: boolean; bits: number }
  | { kind: 'string'; size: number }
  | { kind: 'none' }

export interface TracepointField {
  name: string
  /** the C type from the format file, e.g. `const char *`, `int`, `char[16]` */
  type: string
  size: number
  signed: boolean
}

export interface CheckOptions {
  /** the fields of `category:name`, or undefined when no such tracepoint exists */
  tracepointFields?: (category: string, name: string) => TracepointField[] | undefined
}

export interface CheckedProgram {
  program: Program
  /** map id -> shape; the aggregator and printers take them in this order */
  maps: MapShape[]
  mapIds: Map<string, number>
  /** the type of every expression node */
  types: WeakMap<Expression, ValueType>
}

const UINT64: ValueType = { kind: 'int', signed: false, bits: 64 }
const INT64: ValueType = { kind: 'int', signed: true, bits: 64 }
const NONE: ValueType = { kind: 'none' }
/** a stack's text: bpftrace keeps up to 127 frames, each line well under 512 bytes */
const STACK_TYPE: ValueType = { kind: 'string', size: 127 * 512 }
/** the probes whose events carry stacks */
const STACK_PROVIDERS = new Set<AttachPoint['provider']>(['profile', 'tracepoint', 'uprobe', 'uretprobe'])
/** bpftrace's default string size (BPFTRACE_STRLEN) */
export const STRING_SIZE = 64

const AGGREGATIONS: Record<string, MapKind> = { count: 'count', sum: 'sum', min: 'min', max: 'max', avg: 'avg', stats: 'stats', hist: 'hist', lhist: 'lhist' }
const ARITY: Record<string, number> = { count: 0, sum: 1, min: 1, max: 1, avg: 1, stats: 1, hist: 1, lhist: 4 }
const UNSIGNED_BUILTINS = new Set(['pid', 'tid', 'uid', 'gid', 'cpu', 'nsecs', 'elapsed'])

function typeName(type: ValueType): string {
  if (type.kind === 'int') return `${type.signed ? '' : 'u'}int${type.bits}`
  if (type.kind === 'string') return `string[${type.size}]`
  return 'none'
}

function fieldType(field: TracepointField): ValueType {
  if (field.type.startsWith('__data_loc')) return { kind: 'string', size: STRING_SIZE }
  if (/\bchar\s*\[/.test(field.type)) return { kind: 'string', size: field.size }
  if (field.type.includes('*')) return UINT64
  return { kind: 'int', signed: field.signed, bits: Math.min(64, field.size * 8) }
}

function isMapKind(value: Expression): MapKind | undefined {
  return value.kind === 'call' ? AGGREGATIONS[value.name] : undefined
}

class Checker {
  readonly errors: BpftraceError[] = []
  readonly maps: MapShape[] = []
  readonly mapIds = new Map<string, number>()
  readonly types = new WeakMap<Expression, ValueType>()
  #mapKeyTypes = new Map<string, ValueType[]>()
  /** maps assigned so far in this pass: the first assignment of a pass declares the shape */
  #assigned = new Set<string>()
  readonly #options: CheckOptions
  #probe!: Probe
  #variables = new Map<string, ValueType>()
  /** the map reads of `@x op= e` statements: an undeclared map reads as 0 (uint64) there */
  readonly #compoundReads = new WeakSet<Expression>()

  constructor(options: CheckOptions) {
    this.#options = options
  }

  /** Starts a pass over the program, keeping the maps declared by the last one. */
  startPass(): void {
    this.errors.length = 0
    this.#mapKeyTypes = new Map()
    this.#assigned = new Set()
  }

  #error(message: string, loc: Location): ValueType {
    this.errors.push(new BpftraceError(message, loc))
    return NONE
  }

  probe(probe: Probe): void {
    this.#probe = probe
    this.#variables = new Map()
    for (const point of probe.attachPoints) this.#attachPoint(point)
    if (probe.predicate) {
      const type = this.expression(probe.predicate)
      if (type.kind !== 'int' && type.kind !== 'none') this.#error(`Invalid type for predicate: ${typeName(type)}`, probe.predicate.loc)
    }
    for (const statement of probe.statements) this.#statement(statement)
  }

  #attachPoint(point: AttachPoint): void {
    if (point.provider !== 'tracepoint' || !this.#options.tracepointFields) return
    if (/[*?]/.test(point.category + point.name)) return
    if (!this.#options.tracepointFields(point.category, point.name)) this.#error(`tracepoint not found: ${point.category}:${point.name}`, point.loc)
  }

  #providers(): Set<AttachPoint['provider']> {
    return new Set(this.#probe.attachPoints.map((p) => p.provider))
  }

  #statement(statement: Statement): void {
    if (statement.kind === 'expression') {
      const call = statement.expression
      if (call.kind === 'call' && AGGREGATIONS[call.name]) {
        this.#error(`${call.name}() should be directly assigned to a map`, call.loc)
        return
      }
      if (call.kind !== 'call' && call.kind !== 'increment') this.#error('a statement must be a call, an assignment or an increment', statement.loc)
      this.expression(call)
    } else if (statement.kind === 'assignVariable') {
      if (isMapKind(statement.value)) {
        this.#error(`${(statement.value as { name: string }).name}() should be directly assigned to a map`, statement.value.loc)
        return
      }
      const type = this.expression(statement.value)
      if (type.kind === 'none') return
      this.types.set(statement.variable, type)
      this.#variables.set(statement.variable.name, type)
    } else {
      if (statement.compound && statement.value.kind === 'binary') this.#compoundReads.add(statement.value.left)
      this.#assignMap(statement.map, statement.value)
    }
  }

  #assignMap(map: MapAccess, value: Expression): void {
    const aggregation = isMapKind(value)
    let kind: MapKind
    let signed = false
    let range: MapShape['range']
    if (aggregation && value.kind === 'call') {
      kind = aggregation
      if (value.args.length !== ARITY[value.name]) {
        this.#error(`${value.name}() requires ${ARITY[value.name]} argument${ARITY[value.name] === 1 ? '' : 's'} (${value.args.length} provided)`, value.loc)
        return
      }
      const argument = value.args[0] ? this.expression(value.args[0]) : UINT64
      if (value.args[0] && argument.kind !== 'int' && argument.kind !== 'none') this.#error(`${value.name}() only supports integer arguments (${typeName(argument)} provided)`, value.args[0].loc)
      signed = kind === 'sum' ? argument.kind === 'int' && argument.signed : kind === 'avg' || kind === 'stats'
      if (kind === 'lhist') range = this.#lhistRange(value.args)
    } else {
      const type = this.expression(value)
      if (type.kind === 'none') return
      kind = type.kind === 'string' ? 'string' : 'integer'
      signed = type.kind === 'int' && type.signed
    }
    const keys = this.#mapKeys(map)
    const known = this.mapIds.get(map.name)
    const declared: MapShape = { name: map.name, kind, signed, keys, ...(range ? { range } : {}) }
    if (known === undefined) {
      this.mapIds.set(map.name, this.maps.length)
      this.maps.push(declared)
    }
    if (known === undefined || !this.#assigned.has(map.name)) {
      this.maps[this.mapIds.get(map.name)!] = declared
      this.#assigned.add(map.name)
      return
    }
    const shape = this.maps[known]
    const shown = (k: MapKind) => (k === 'integer' ? 'int64' : k === 'string' ? 'string' : k)
    if (shape.kind !== kind) this.#error(`Type mismatch for ${map.name}: trying to assign value of type '${shown(kind)}' when map already contains a value of type '${shown(shape.kind)}`, map.loc)
    else if (kind === 'lhist' && range && (range.min !== shape.range!.min || range.max !== shape.range!.max || range.step !== shape.range!.step)) this.#error(`Different lhist bounds in a single map unsupported`, value.loc)
    else shape.signed = shape.signed || signed
  }

  #lhistRange(args: Expression[]): MapShape['range'] {
    const [, min, max, step] = args.map((arg, i) => {
      if (i === 0) return 0
      if (arg.kind !== 'integer' || arg.value < 0n) {
        this.#error(`lhist: invalid ${['', 'min', 'max', 'step'][i]} value (must be non-negative literal)`, arg.loc)
        return 0
      }
      return Number(arg.value)
    })
    if (step === 0) this.#error('lhist() step must be >= 1', args[3].loc)
    else if (min > max) this.#error('lhist() min must be less than max', args[1].loc)
    else if ((max - min) / step > 1000) this.#error('lhist() too many buckets, must be <= 1000', args[3].loc)
    return { min, max, step: Math.max(step, 1) }
  }

  /** Key types, widened to 64-bit integers as bpftrace widens them; checked across uses. */
  #mapKeys(map: MapAccess): KeyType[] {
    const types = map.keys.map((key) => this.expression(key))
    const keys: KeyType[] = []
    types.forEach((type, i) => {
      if (type.kind === 'string') keys.push('string')
      else if (type.kind === 'int') keys.push('integer')
      else if (type.kind === 'none') keys.push('integer')
      else this.#error('invalid map key', map.keys[i].loc)
    })
    const known = this.#mapKeyTypes.get(map.name)
    if (!known) this.#mapKeyTypes.set(map.name, types)
    else {
      const name = (t: ValueType) => (t.kind === 'int' ? 'unsigned int64' : typeName(t))
      const same = known.length === types.length && known.every((t, i) => t.kind === types[i].kind)
      if (!same) this.#error(`Argument mismatch for ${map.name}: trying to access with arguments: [${types.map(name).join(', ')}] when map expects arguments: [${known.map(name).join(', ')}]`, map.loc)
    }
    return keys
  }

  expression(expression: Expression): ValueType {
    const type = this.#typeOf(expression)
    this.types.set(expression, type)
    return type
  }

  #typeOf(expression: Expression): ValueType {
    switch (expression.kind) {
      case 'integer':
        return INT64
      case 'string':
        return { kind: 'string', size: Buffer.byteLength(expression.value) + 1 }
      case 'builtin':
        return this.#builtin(expression.name, expression.loc)
      case 'field':
        return this.#field(expression)
      case 'map': {
        this.#mapKeys(expression)
        const id = this.mapIds.get(expression.name)
        if (id === undefined && this.#compoundReads.has(expression)) return UINT64
        if (id === undefined) return this.#error(`Undefined map: ${expression.name}`, expression.loc)
        const shape = this.maps[id]
        if (shape.kind === 'hist' || shape.kind === 'lhist' || shape.kind === 'stats') return this.#error(`${shape.name} holds a ${shape.kind}() and cannot be read in an expression`, expression.loc)
        if (shape.kind === 'string') return { kind: 'string', size: STRING_SIZE }
        return { kind: 'int', signed: shape.signed || shape.kind === 'min' || shape.kind === 'avg', bits: 64 }
      }
      case 'variable': {
        const type = this.#variables.get(expression.name)
        return type ?? this.#error(`Undefined or undeclared variable: ${expression.name}`, expression.loc)
      }
      case 'unary': {
        const operand = this.expression(expression.operand)
        if (operand.kind === 'string') return this.#error(`The ${expression.operator} operator can not be used on expressions of type '${typeName(operand)}'`, expression.loc)
        return expression.operator === '-' ? INT64 : operand.kind === 'none' ? NONE : operand
      }
      case 'binary':
        return this.#binary(expression)
      case 'ternary': {
        this.expression(expression.condition)
        const then = this.expression(expression.then)
        const otherwise = this.expression(expression.otherwise)
        if (then.kind !== otherwise.kind) return this.#error(`Ternary operator must return the same type: have '${typeName(then)}' and '${typeName(otherwise)}'`, expression.loc)
        return then
      }
      case 'call':
        return this.#call(expression)
      case 'increment':
        return this.#increment(expression)
    }
  }

  /** `@x++` makes @x an int64 map when it has no type yet; `$x++` needs $x assigned first. */
  #increment(expression: Extract<Expression, { kind: 'increment' }>): ValueType {
    const target = expression.target
    if (target.kind === 'variable') {
      const type = this.expression(target)
      if (type.kind === 'string') return this.#error(`The ${expression.operator} operator can not be used on expressions of type '${typeName(type)}'`, expression.loc)
      return type
    }
    const keys = this.#mapKeys(target)
    const id = this.mapIds.get(target.name)
    if (id === undefined) {
      this.mapIds.set(target.name, this.maps.length)
      this.maps.push({ name: target.name, kind: 'integer', signed: true, keys })
      this.#assigned.add(target.name)
    } else if (!this.#assigned.has(target.name)) {
      this.maps[id] = { name: target.name, kind: 'integer', signed: true, keys }
      this.#assigned.add(target.name)
    } else if (this.maps[id].kind !== 'integer') {
      return this.#error(`The ${expression.operator} operator can not be used on expressions of type '${this.maps[id].kind}'`, expression.loc)
    }
    this.types.set(target, INT64)
    return INT64
  }

  #builtin(name: string, loc: Location): ValueType {
    const providers = this.#providers()
    if (UNSIGNED_BUILTINS.has(name)) return UINT64
    if (name === 'comm') return { kind: 'string', size: 16 }
    if (name === 'retval') {
      if (providers.size !== 1 || !providers.has('uretprobe')) return this.#error(`The retval builtin can only be used with 'kretprobe' and 'uretprobe' and 'kfunc' probes${providers.has('tracepoint') ? ' (try to use args->ret instead)' : ''}`, loc)
      return UINT64
    }
    if (/^arg[0-9]$/.test(name)) {
      if (providers.size !== 1 || !providers.has('uprobe')) return this.#error(`The ${name} builtin can only be used with 'kprobes', 'uprobes' and 'usdt' probes`, loc)
      return UINT64
    }
    if (name === 'args') return this.#error('args must be followed by a field: args.name or args->name', loc)
    if (name === 'kstack' || name === 'ustack') return this.#stackType(name, loc)
    if (name === 'perf' || name === 'bpftrace') return this.#error(`the stack mode ${name} is only an argument of ustack() or kstack()`, loc)
    return this.#error(`${name} is not supported by Periscope's bpftrace subset yet`, loc)
  }

  /**
   * Stacks come with profile samples, and with tracepoint and uprobe records when a probe reads
   * them (capture.ts, uprobes.ts); a stack is a string typed large enough never to be cut.
   */
  #stackType(name: string, loc: Location): ValueType {
    const other = [...this.#providers()].find((provider) => !STACK_PROVIDERS.has(provider))
    if (other !== undefined) return this.#error(`${name} is only supported in profile, tracepoint, uprobe and uretprobe probes by Periscope's bpftrace subset (${other} used here)`, loc)
    return STACK_TYPE
  }

  #field(expression: Extract<Expression, { kind: 'field' }>): ValueType {
    if (expression.base.kind !== 'builtin' || expression.base.name !== 'args') return this.#error('only fields of args (args.name or args->name) are supported', expression.loc)
    const points = this.#probe.attachPoints
    if (!points.every((p) => p.provider === 'tracepoint')) {
      const other = points.find((p) => p.provider !== 'tracepoint')!.provider
      return this.#error(`The args builtin can only be used with tracepoint/kfunc/uprobeprobes (${other === 'BEGIN' || other === 'END' ? 'special' : other} used here)`, expression.base.loc)
    }
    this.types.set(expression.base, NONE)
    const resolve = this.#options.tracepointFields
    if (!resolve) return INT64
    let type: ValueType | undefined
    for (const point of points as Extract<AttachPoint, { provider: 'tracepoint' }>[]) {
      if (/[*?]/.test(point.category + point.name)) continue
      const field = resolve(point.category, point.name)?.find((f) => f.name === expression.field)
      if (!field) return this.#error(`Struct/union of type 'struct _tracepoint_${point.category}_${point.name}' does not contain a field named '${expression.field}'`, expression.loc)
      type = fieldType(field)
    }
    return type ?? INT64
  }

  #binary(expression: Extract<Expression, { kind: 'binary' }>): ValueType {
    const left = this.expression(expression.left)
    const right = this.expression(expression.right)
    if (left.kind === 'none' || right.kind === 'none') return NONE
    const comparison = ['==', '!=', '<', '<=', '>', '>='].includes(expression.operator)
    if (left.kind !== right.kind) return this.#error(`Type mismatch for '${expression.operator}': comparing '${typeName(left)}' with '${typeName(right)}'`, expression.loc)
    if (left.kind === 'string') {
      if (expression.operator !== '==' && expression.operator !== '!=') return this.#error(`The ${expression.operator} operator can not be used on expressions of types string, string`, expression.loc)
      return UINT64
    }
    if (comparison || expression.operator === '&&' || expression.operator === '||') return UINT64
    return { kind: 'int', signed: left.kind === 'int' && right.kind === 'int' && left.signed && right.signed, bits: 64 }
  }

  #call(call: Extract<Expression, { kind: 'call' }>): ValueType {
    const args = call.args
    switch (call.name) {
      case 'printf': {
        if (args.length === 0 || args[0].kind !== 'string') return this.#error(`printf() expects a string literal (${args.length === 0 ? 'none' : typeName(this.expression(args[0])).replace(/^u?int\d+$/, 'integer')} provided)`, call.loc)
        const specs = conversions(args[0].value)
        const types = args.slice(1).map((arg) => this.expression(arg))
        if (types.length < specs.length) return this.#error(`printf: Not enough arguments for format string (${types.length} supplied, ${specs.length} expected)`, call.loc)
        if (types.length > specs.length) return this.#error(`printf: Too many arguments for format string (${types.length} supplied, ${specs.length} expected)`, call.loc)
        specs.forEach((spec, i) => {
          const have = types[i].kind === 'int' ? 'integer' : types[i].kind === 'string' ? 'string' : undefined
          if (have && have !== spec.type) this.#error(`printf: %${spec.token} specifier expects a value of type ${spec.type} (${have} supplied)`, call.loc)
        })
        return NONE
      }
      case 'str': {
        if (args.length < 1 || args.length > 2) return this.#error(`str() requires 1 or 2 arguments (${args.length} provided)`, call.loc)
        args.forEach((arg) => this.expression(arg))
        // bpftrace 0.17 reads the length asked for plus the NUL, at most its string size
        const size = args[1]?.kind === 'integer' ? Math.min(Number(args[1].value) + 1, STRING_SIZE) : STRING_SIZE
        return { kind: 'string', size }
      }
      case 'exit':
        if (args.length !== 0) return this.#error(`exit() requires no arguments (${args.length} provided)`, call.loc)
        return NONE
      case 'print':
      case 'clear':
      case 'delete': {
        const [target] = args
        if (args.length !== 1 || target.kind !== 'map') return this.#error(`${call.name}() expects a map argument`, call.loc)
        if (call.name === 'delete' ? target.keys.length === 0 && this.#mapKeyTypes.get(target.name)?.length !== 0 : target.keys.length !== 0) return this.#error(call.name === 'delete' ? 'delete() expects a map with a key: delete(@map[key])' : `The map passed to ${call.name}() should not be indexed by a key`, target.loc)
        target.keys.forEach((key) => this.expression(key))
        if (!this.mapIds.has(target.name)) return this.#error(`Undefined map: ${target.name}`, target.loc)
        return NONE
      }
      case 'kstack':
      case 'ustack': {
        if (args.length > 2) return this.#error(`${call.name}() takes at most 2 arguments (${args.length} provided)`, call.loc)
        for (const [i, arg] of args.entries()) {
          const mode = arg.kind === 'builtin' && (arg.name === 'perf' || arg.name === 'bpftrace')
          if (mode ? i !== 0 : arg.kind !== 'integer' || i !== args.length - 1) return this.#error(`${call.name}() takes a stack mode (bpftrace or perf) then a number of frames: ${call.name}(perf, 5)`, arg.loc)
          if (!mode && (arg.kind !== 'integer' || arg.value < 1n || arg.value > 1024n)) return this.#error(`${call.name}(): the number of frames must be from 1 to 1024`, arg.loc)
          if (mode) this.types.set(arg, NONE)
        }
        return this.#stackType(call.name, call.loc)
      }
      default:
        if (AGGREGATIONS[call.name]) return this.#error(`${call.name}() should be directly assigned to a map`, call.loc)
        return this.#error(`${call.name}() is not supported by Periscope's bpftrace subset yet`, call.loc)
    }
  }
}

/**
 * Checks the program; throws `BpftraceErrors` listing every error. A map is declared by its
 * first assignment in program order; a map that is never assigned is an error where it is used.
 */
export function check(program: Program, options: CheckOptions = {}): CheckedProgram {
  const checker = new Checker(options)
  // a first pass declares every map, so a probe that reads or prints a map written by a later
  // probe types; the second pass finds the errors again, with every map known
  for (const probe of program.probes) checker.probe(probe)
  checker.startPass()
  for (const special of ['BEGIN', 'END'] as const) {
    const points = program.probes.flatMap((probe) => probe.attachPoints.filter((p) => p.provider === special))
    for (const extra of points.slice(1)) checker.errors.push(new BpftraceError(`More than one ${special} probe defined`, extra.loc))
  }
  for (const probe of program.probes) checker.probe(probe)
  if (checker.errors.length) throw new BpftraceErrors(checker.errors)
  return { program, maps: checker.maps, mapIds: checker.mapIds, types: checker.types }
}

/** Which stacks a probe reads (`kstack`, `ustack`, in any form): what its capture must record. */
export function stacksRead(probe: Probe): { kernel: boolean; user: boolean } {
  const read = { kernel: false, user: false }
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit)
    if (typeof node !== 'object' || node === null || !('kind' in node)) return
    const expression = node as Expression
    if ((expression.kind === 'builtin' || expression.kind === 'call') && (expression.name === 'kstack' || expression.name === 'ustack')) read[expression.name === 'kstack' ? 'kernel' : 'user'] = true
    Object.values(node).forEach(visit)
  }
  visit([probe.predicate, ...probe.statements])
  return read
}
