/**
 * The syntax tree of the bpftrace subset Periscope runs (issue 13): what `parse()` returns and
 * what the semantic pass (`check.ts`) and the evaluator (`evaluate.ts`) walk.
 *
 * Every node carries its `Location`, computed as bpftrace 0.17 computes it, so errors point at
 * the same columns: a token starts where the last run of white space ended (bpftrace's lexer
 * only steps its location on white space), and a node spans from its first token's start to its
 * last token's end.
 */

/** 1-based line and column; `endColumn` is one past the last character. */
export interface Location {
  line: number
  column: number
  endLine: number
  endColumn: number
}

export type AttachPoint =
  /** `tracepoint:category:name`; either part may hold `*` and `?` wildcards */
  | { provider: 'tracepoint'; category: string; name: string; loc: Location }
  | { provider: 'uprobe' | 'uretprobe'; path: string; symbol: string; loc: Location }
  /** `profile:hz:99`, `profile:ms:10`, `profile:s:1`, `profile:us:100` */
  | { provider: 'profile'; unit: RateUnit; value: number; loc: Location }
  /** `interval:s:1`, `interval:ms:100`, `interval:us:...`, `interval:hz:...` */
  | { provider: 'interval'; unit: RateUnit; value: number; loc: Location }
  | { provider: 'BEGIN' | 'END'; loc: Location }

export type RateUnit = 'hz' | 's' | 'ms' | 'us'

export interface Probe {
  attachPoints: AttachPoint[]
  predicate: Expression | undefined
  statements: Statement[]
  loc: Location
}

export interface Program {
  probes: Probe[]
}

export type Statement =
  | { kind: 'expression'; expression: Expression; loc: Location }
  /**
   * `@map[keys] = value`; the value may be an aggregation call such as `count()`. `@x += e` is
   * `@x = @x + e` with `compound` set, as bpftrace reads it.
   */
  | { kind: 'assignMap'; map: MapAccess; value: Expression; compound: boolean; loc: Location }
  /** `$name = value`, `$name op= value` */
  | { kind: 'assignVariable'; variable: Variable; value: Expression; compound: boolean; loc: Location }

export interface MapAccess {
  kind: 'map'
  /** with its `@` */
  name: string
  keys: Expression[]
  loc: Location
}

export interface Variable {
  kind: 'variable'
  /** with its `$` */
  name: string
  loc: Location
}

export type BinaryOperator = '==' | '!=' | '<' | '<=' | '>' | '>=' | '&&' | '||' | '+' | '-' | '*' | '/' | '%' | '&' | '|' | '^' | '<<' | '>>'
export type UnaryOperator = '!' | '-' | '~'

export type Expression =
  | { kind: 'integer'; value: bigint; loc: Location }
  | { kind: 'string'; value: string; loc: Location }
  /** pid, tid, uid, gid, comm, cpu, nsecs, elapsed, retval, args, arg0..arg9, kstack, ustack */
  | { kind: 'builtin'; name: string; loc: Location }
  /** `args.field`, or the older `args->field` that bpftrace 0.17 documents */
  | { kind: 'field'; base: Expression; field: string; arrow: boolean; loc: Location }
  | MapAccess
  | Variable
  | { kind: 'binary'; operator: BinaryOperator; left: Expression; right: Expression; loc: Location }
  | { kind: 'unary'; operator: UnaryOperator; operand: Expression; loc: Location }
  | { kind: 'ternary'; condition: Expression; then: Expression; otherwise: Expression; loc: Location }
  /** `@x++`, `--$y`: the new value is stored; the expression is the old one unless `prefix` */
  | { kind: 'increment'; operator: '++' | '--'; target: MapAccess | Variable; prefix: boolean; loc: Location }
  /** `count()`, `str(x)`, `printf(...)`, `exit()` ... */
  | { kind: 'call'; name: string; args: Expression[]; loc: Location }
