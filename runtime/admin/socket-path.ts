/**
 * Where the admin socket lives, and what keeps other users out of it.
 *
 * The kernel lets a process connect() to a unix socket only if it may write the socket file.
 * The socket is created 0600: the umask in force at bind() makes it so from the moment it exists,
 * with no chmod afterwards (a chmod by path would follow a symlink swapped in meanwhile). So only
 * this process's uid, and processes with CAP_DAC_OVERRIDE (root), can connect. That holds only
 * while nobody else can replace the socket or its directory, so the directory must be ours, a
 * real directory (not a symlink), and not writable by group or others; every directory above it
 * must be changeable by root or us alone, or be sticky like /tmp.
 *
 * What this does not give: Node has no SO_PEERCRED, so the server never learns a peer's uid or
 * pid. A process of another uid that holds CAP_DAC_OVERRIDE can connect, and so can any process
 * a legitimate client hands its connected socket to.
 */
import { once } from 'node:events'
import { lstatSync, mkdirSync, realpathSync, rmSync, statSync, type Stats } from 'node:fs'
import net from 'node:net'
import path from 'node:path'

/** Where the socket goes when the config names none. */
export function defaultSocketPath(): string {
  if (process.geteuid?.() === 0) return '/run/periscope/admin.sock'
  const base = process.env.XDG_RUNTIME_DIR ?? '/tmp'
  return path.join(base, `periscope-${process.geteuid?.() ?? 'user'}`, 'admin.sock')
}

const ourUid = (): number => process.geteuid?.() ?? -1

const octal = (mode: number): string => `0${(mode & 0o7777).toString(8)}`

const writableBy = (stat: Stats): string | undefined => {
  const who = [stat.mode & 0o020 ? 'its group' : '', stat.mode & 0o002 ? 'others' : ''].filter((w) => w !== '')
  return who.length === 0 ? undefined : who.join(' and ')
}

const elsewhere = 'or set admin.socket in the config to a path in a directory only you can write'

/** The directory holding the socket: ours, real, and writable by nobody else. */
function checkSocketDirectory(dir: string): void {
  const stat = lstatSync(dir)
  if (stat.isSymbolicLink()) {
    throw new Error(`admin socket directory ${dir} is a symbolic link (to ${realpathSync(dir)}); the socket is never placed through a link. Remove it (\`rm ${dir}\`) so Periscope creates the directory, ${elsewhere}`)
  }
  if (!stat.isDirectory()) throw new Error(`admin socket directory ${dir} is not a directory; remove it, ${elsewhere}`)
  if (stat.uid !== ourUid()) {
    throw new Error(`admin socket directory ${dir} belongs to uid ${stat.uid}, not to this process (uid ${ourUid()}): another user may have created it to take over the socket. Remove it (\`rm -r ${dir}\`, as root or uid ${stat.uid}) so Periscope creates its own, ${elsewhere}`)
  }
  const others = writableBy(stat)
  if (others !== undefined) {
    throw new Error(`admin socket directory ${dir} is writable by ${others} (mode ${octal(stat.mode)}), who could replace the socket. Run \`chmod 700 ${dir}\`, ${elsewhere}`)
  }
  // whoever can rename an ancestor can swap the whole path
  const real = realpathSync(dir)
  for (let ancestor = path.dirname(real); ; ancestor = path.dirname(ancestor)) {
    const above = statSync(ancestor)
    if (above.uid !== 0 && above.uid !== ourUid()) {
      throw new Error(`admin socket directory ${dir}: ${ancestor} above it belongs to uid ${above.uid}, who could replace the directory. Set admin.socket in the config to a path whose directories only root and you can change (under /run, $XDG_RUNTIME_DIR or your home)`)
    }
    const aboveOthers = writableBy(above)
    if (aboveOthers !== undefined && (above.mode & 0o1000) === 0) {
      throw new Error(`admin socket directory ${dir}: ${ancestor} above it is writable by ${aboveOthers} without the sticky bit (mode ${octal(above.mode)}), who could replace the directory; run \`chmod go-w ${ancestor}\`, ${elsewhere}`)
    }
    if (ancestor === path.dirname(ancestor)) break
  }
}

/** Removes a socket no runtime answers on; refuses a live one, and anything that is not a socket. */
async function clearStaleSocket(file: string): Promise<void> {
  let stat: Stats
  try {
    stat = lstatSync(file)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return
    throw error
  }
  if (!stat.isSocket()) {
    throw new Error(`admin socket path ${file} exists and is not a socket; Periscope will not replace it. Remove it if it is yours and unused, ${elsewhere}`)
  }
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect(file)
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', () => resolve(false))
  })
  if (alive) {
    throw new Error(`admin socket ${file} is in use by another running periscope; stop it, or set admin.socket in the config`)
  }
  rmSync(file, { force: true })
}

/**
 * Makes the socket's directory (0700) if it is missing, checks it as described above, clears a
 * stale socket, and returns the path to listen on, with the directory's links resolved.
 */
export async function prepareSocketPath(file: string): Promise<string> {
  const dir = path.dirname(path.resolve(file))
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  checkSocketDirectory(dir)
  const socket = path.join(realpathSync(dir), path.basename(file))
  await clearStaleSocket(socket)
  return socket
}

/** Listens on `file` with the socket created 0600, and checks that it was. */
export async function listenPrivately(server: net.Server, file: string): Promise<void> {
  const listening = once(server, 'listening')
  // bind() runs inside listen(), so the umask is back to normal before any other JavaScript runs
  const previous = process.umask(0o177)
  try {
    server.listen(file)
  } finally {
    process.umask(previous)
  }
  await listening
  const stat = lstatSync(file)
  if (!stat.isSocket() || stat.uid !== ourUid() || (stat.mode & 0o077) !== 0) {
    server.close()
    throw new Error(`admin socket ${file} came out as ${stat.isSocket() ? 'a socket' : 'not a socket'} of uid ${stat.uid} with mode ${octal(stat.mode)}, not a 0600 socket of uid ${ourUid()}; refusing to serve it`)
  }
}
