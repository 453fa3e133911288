/**
 * The pprof files a `periscope run` wrote to its embedded store (data/profiles), decoded, oldest
 * first. A file still being written does not decode yet and is left for the next poll.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { Profile } from 'pprof-format'
import type { Periscope } from './periscope.ts'

export function storedProfiles(periscope: Periscope): { file: string; profile: Profile }[] {
  const dir = join(periscope.dir, 'data', 'profiles')
  let files: string[]
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.pb.gz')).sort()
  } catch {
    return []
  }
  return files.flatMap((file) => {
    try {
      return [{ file, profile: Profile.decode(gunzipSync(readFileSync(join(dir, file)))) }]
    } catch {
      return []
    }
  })
}
