/**
 * Reads and checks periscope.yaml. A bad file is rejected as a whole, with one line per problem
 * naming its path (`plugins.http.resource_limits.max_memory_mb: expected number, received string`).
 */
import { readFile } from 'node:fs/promises'
import { parse } from 'yaml'
import type { z } from 'zod'
import type { PluginLimits } from '../plugins/host.ts'
import type { PluginSettings } from '../plugins/manager.ts'
import { cgroupId } from './cgroups.ts'
import { shippedPluginSettings } from './receiver.ts'
import { configSchema, type PeriscopeConfig, type ResourceLimits } from './schema.ts'

export { configSchema, type PeriscopeConfig }

export class ConfigError extends Error {
  readonly problems: string[]
  constructor(source: string, problems: string[]) {
    super(`${source} is not a valid Periscope config:\n  ${problems.join('\n  ')}\nfix the keys above (see runtime/config/schema.ts for every setting)`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

function formatIssues(issues: z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const where = issue.path.length === 0 ? '(top level)' : issue.path.map(String).join('.')
    if (issue.code === 'unrecognized_keys') {
      return `${where === '(top level)' ? '' : `${where}.`}${issue.keys.join(', ')}: unknown key${issue.keys.length > 1 ? 's' : ''}`
    }
    return `${where}: ${issue.message}`
  })
}

/** Checks an already parsed document. */
export function parseConfig(document: unknown, source = 'config'): PeriscopeConfig {
  const result = configSchema.safeParse(document ?? {})
  if (!result.success) throw new ConfigError(source, formatIssues(result.error.issues))
  return result.data
}

export function parseConfigText(text: string, source = 'config'): PeriscopeConfig {
  let document: unknown
  try {
    document = parse(text)
  } catch (error) {
    throw new ConfigError(source, [`not valid YAML: ${(error as Error).message}`])
  }
  return parseConfig(document, source)
}

export async function loadConfig(file: string): Promise<PeriscopeConfig> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    throw new Error(`read config ${file}: ${(error as Error).message}; check the --config path`, { cause: error })
  }
  return parseConfigText(text, file)
}

export function limitsFrom(limits: ResourceLimits | undefined): Partial<PluginLimits> {
  const out: Partial<PluginLimits> = {}
  if (limits?.max_memory_mb !== undefined) out.memoryMb = limits.max_memory_mb
  if (limits?.max_cpu_percent !== undefined) out.maxCpuPercent = limits.max_cpu_percent
  if (limits?.max_events_per_second !== undefined) out.maxEventsPerSecond = limits.max_events_per_second
  if (limits?.batch_budget !== undefined) out.callBudgetMs = limits.batch_budget
  if (limits?.call_deadline !== undefined) out.callDeadlineMs = limits.call_deadline
  return out
}

/**
 * Per-plugin settings for the plugin manager: what the receiver block implies for the shipped
 * plugins, overridden by each `plugins.<name>` entry key by key. `target_cgroups` paths become
 * cgroup ids here (`target_cgroup_ids`); a path that is not a cgroup v2 directory is a
 * ConfigError naming it, with every other such path.
 */
export function pluginSettingsFrom(config: PeriscopeConfig, source = 'config'): Record<string, PluginSettings> {
  const out: Record<string, PluginSettings> = {}
  const problems: string[] = []
  for (const [name, derived] of Object.entries(shippedPluginSettings(config))) {
    out[name] = { enabled: derived.enabled, config: { ...derived.config } }
  }
  for (const [name, settings] of Object.entries(config.plugins ?? {})) {
    const pluginConfig: Record<string, unknown> = { ...out[name]?.config, ...settings.config }
    if (settings.target_pids !== undefined) pluginConfig.target_pids = settings.target_pids
    if (settings.target_cgroups !== undefined) {
      pluginConfig.target_cgroup_ids = settings.target_cgroups.flatMap((path, i) => {
        try {
          return [cgroupId(path)]
        } catch (error) {
          problems.push(`plugins.${name}.target_cgroups.${i}: ${(error as Error).message}`)
          return []
        }
      })
    }
    out[name] = { enabled: settings.enabled ?? out[name]?.enabled, config: pluginConfig, limits: limitsFrom(settings.resource_limits) }
  }
  if (problems.length > 0) throw new ConfigError(source, problems)
  return out
}
