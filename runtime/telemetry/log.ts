/** How the exporter reports problems: to the runtime's log, never by throwing into a plugin. */
export type TelemetryLogLevel = 'info' | 'warn' | 'error'
export type TelemetryLog = (level: TelemetryLogLevel, message: string) => void

export const stderrLog: TelemetryLog = (level, message) => {
  process.stderr.write(`periscope telemetry ${level}: ${message}\n`)
}
