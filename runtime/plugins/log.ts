/** The runtime's own log: plugin failures, reloads and plugin `ctx.log` lines all go through it. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

export interface Logger {
  debug(message: string): void
  info(message: string): void
  warn(message: string): void
  error(message: string): void
}

/** Writes `level message` lines to stderr, so stdout stays free for data. */
export function consoleLogger(minimum: LogLevel = 'info'): Logger {
  const order: LogLevel[] = ['debug', 'info', 'warn', 'error']
  const at = order.indexOf(minimum)
  const write = (level: LogLevel) => (message: string) => {
    if (order.indexOf(level) >= at) process.stderr.write(`periscope ${level}: ${message}\n`)
  }
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') }
}

/** Keeps lines in memory (tests assert on them). */
export function memoryLogger(): Logger & { lines: { level: LogLevel; message: string }[] } {
  const lines: { level: LogLevel; message: string }[] = []
  const add = (level: LogLevel) => (message: string) => { lines.push({ level, message }) }
  return { lines, debug: add('debug'), info: add('info'), warn: add('warn'), error: add('error') }
}
