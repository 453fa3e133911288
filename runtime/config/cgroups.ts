/**
 * Cgroup paths from the config to the ids the kernel filters by. A cgroup v2 id is the inode number
 * of the cgroup's directory (what bpf_get_current_cgroup_id returns for a process in it), so a
 * path is resolved once, with stat, when the config is read.
 */
import { type BigIntStats, readFileSync, statfsSync, statSync } from 'node:fs'

/** statfs(2)'s f_type of a cgroup v2 file system */
const CGROUP2_SUPER_MAGIC = 0x63677270

/**
 * Where cgroup v2 is mounted, from a /proc/self/mountinfo text: `/sys/fs/cgroup` on a unified
 * host, `/sys/fs/cgroup/unified` on a hybrid one (v1 controllers at /sys/fs/cgroup/<name>).
 */
export function cgroup2MountPoints(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): string[] {
  const points: string[] = []
  for (const line of mountinfo.split('\n')) {
    // "<id> <parent> <major:minor> <root> <mount point> <options> [<optional>...] - <type> <source> <super options>"
    const [mounted, filesystem] = line.split(' - ')
    if (filesystem?.split(' ')[0] !== 'cgroup2') continue
    const point = mounted!.split(' ')[4]
    if (point !== undefined) points.push(point.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))))
  }
  return points
}

function whereCgroup2Is(): string {
  const points = cgroup2MountPoints()
  return points.length === 0
    ? 'cgroup v2 is not mounted on this host; mount it with mount -t cgroup2 none /sys/fs/cgroup/unified'
    : `cgroup v2 is mounted at ${points.join(', ')} on this host`
}

/**
 * The cgroup v2 id of the cgroup directory at `path` (absolute). Throws an error that names the
 * path, says why it is not a cgroup v2 directory and where cgroup v2 is mounted.
 */
export function cgroupId(path: string): number {
  let stat: BigIntStats
  try {
    stat = statSync(path, { bigint: true })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    throw new Error(`${path} does not exist; name an existing cgroup directory, e.g. a unit's from \`systemctl show -p ControlGroup <unit>\` (${whereCgroup2Is()})`)
  }
  if (!stat.isDirectory()) throw new Error(`${path} is not a directory; name the cgroup's directory (${whereCgroup2Is()})`)
  if (statfsSync(path).type !== CGROUP2_SUPER_MAGIC) {
    throw new Error(`${path} is not a cgroup v2 directory, and the kernel filters by cgroup v2 ids (${whereCgroup2Is()})`)
  }
  return Number(stat.ino)
}
