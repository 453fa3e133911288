/**
 * Temporary directories a test process makes (data directories, Collector output): removed when
 * the process exits, so a run leaves nothing in /tmp, even after a test that failed before its
 * own cleanup, or one that must keep a directory to the end (a stopped Collector may start again).
 *
 * @example
 *   const dataDir = scratchDir('periscope-pprof-')   // /tmp/periscope-pprof-Ab12Cd
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const made = new Set<string>()

/** A new directory `<tmpdir>/<prefix>XXXXXX`, removed when this process exits. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  if (made.size === 0) process.once('exit', () => { for (const path of made) rmSync(path, { recursive: true, force: true }) })
  made.add(dir)
  return dir
}
