/**
 * Reading and rewriting an application's password file (`application.passwordFiles`) as root on
 * a machine whose application account may own the file and its directory (review finding H3).
 * Done by one small program run with the artifact's node, because the shell cannot open a file
 * without following a link or act on an open descriptor:
 *
 * - the directory is opened once (O_DIRECTORY|O_NOFOLLOW) and must resolve to exactly the
 *   configured directory (no symlinked component); every later name is looked up through that
 *   descriptor (/proc/self/fd/N/NAME, Linux's openat), so swapping a directory mid-way changes
 *   nothing;
 * - the file must be a regular file with one link: a symlink (to /etc/shadow, say), a FIFO, a
 *   device, a directory or a hard link is refused before it is opened, and the descriptor's
 *   fstat must be the same inode as the lstat;
 * - the new content goes to a temporary file created beside it with O_CREAT|O_EXCL|O_NOFOLLOW
 *   (mode 600), chowned and chmodded on the descriptor, fsynced, then renamed over the file
 *   after re-checking that the name still holds the inode that was read;
 * - the mode never widens: apply writes `tightenedMode` (at most 640), so a world-readable file
 *   stops being one when the password goes in.
 */
import { VIGIL_INSTALL } from '../layout/units.ts';
import type { RemoteShell } from '../remote/types.ts';
import { VigilError, problem } from '../util/errors.ts';
import { withPassword, type PasswordFile } from './passwords.ts';

/** What `read` finds: the file's content and the identity the write must find again. */
export interface PasswordFileState {
  content: Buffer;
  /** Permission bits, e.g. 0o640. */
  mode: number;
  uid: number;
  gid: number;
  ino: string;
  dev: string;
}

/** Why a password file was refused, as the program reports it. */
export type Refusal = 'dir-symlink' | 'dir-missing' | 'symlink' | 'not-regular' | 'hardlink' | 'too-large' | 'changed';

/**
 * The program, run as `node -e PROGRAM read PATH` or `node -e PROGRAM write PATH INO DEV MODE`
 * (content on stdin). Prints one JSON object; exit 0, or 3 with `{ refused, ... }`.
 * Plain JavaScript of the artifact's node version; no dependency.
 */
export const PASSWORD_FILE_PROGRAM = String.raw`
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const C = fs.constants;
const [op, target, ino, dev, modeText] = process.argv.slice(1);
const done = (o, code) => { process.stdout.write(JSON.stringify(o)); process.exit(code); };
const refuse = (refused, extra) => done(Object.assign({ refused }, extra), 3);
const kind = (s) => s.isDirectory() ? 'directory' : s.isFIFO() ? 'FIFO' : s.isSocket() ? 'socket' : s.isCharacterDevice() ? 'character device' : s.isBlockDevice() ? 'block device' : 'special file';
const dir = path.dirname(path.resolve(target)), base = path.basename(target);
let dfd;
try {
  dfd = fs.openSync(dir, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
} catch (e) {
  if (e.code === 'ENOENT') refuse('dir-missing');
  if (e.code === 'ELOOP' || e.code === 'ENOTDIR') refuse('dir-symlink', { real: (() => { try { return fs.realpathSync(dir); } catch { return ''; } })() });
  throw e;
}
const at = '/proc/self/fd/' + dfd;
const real = fs.readlinkSync(at);
if (real !== dir) refuse('dir-symlink', { real });
const name = at + '/' + base;
// lstat before open: a device is never opened (opening one can act on it), a FIFO never blocks.
const look = () => { try { return fs.lstatSync(name, { bigint: true }); } catch (e) { if (e.code === 'ENOENT') return undefined; throw e; } };
const l = look();
if (!l) done({ missing: true }, 0);
if (l.isSymbolicLink()) refuse('symlink', { to: fs.readlinkSync(name) });
if (!l.isFile()) refuse('not-regular', { kind: kind(l) });
const fd = fs.openSync(name, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK | C.O_NOCTTY);
const st = fs.fstatSync(fd, { bigint: true });
if (!st.isFile() || st.ino !== l.ino || st.dev !== l.dev) refuse('changed');
if (st.nlink !== 1n) refuse('hardlink', { links: Number(st.nlink) });
if (st.size > 1048576n) refuse('too-large', { size: Number(st.size) });
const id = { ino: String(st.ino), dev: String(st.dev) };
if (op === 'read') {
  const content = fs.readFileSync(fd);
  done(Object.assign({ mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), content: content.toString('base64') }, id), 0);
}
if (op !== 'write' || !/^[0-7]{3,4}$/.test(modeText || '')) { process.stderr.write('usage: write PATH INO DEV MODE'); process.exit(2); }
if (id.ino !== ino || id.dev !== dev) refuse('changed');
const content = fs.readFileSync(0);
const tmp = '.' + base + '.vigil-' + crypto.randomBytes(6).toString('hex');
const tfd = fs.openSync(at + '/' + tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
try {
  fs.writeFileSync(tfd, content);
  fs.fchownSync(tfd, Number(st.uid), Number(st.gid));
  fs.fchmodSync(tfd, parseInt(modeText, 8));
  fs.fsyncSync(tfd);
  fs.closeSync(tfd);
  const again = look();
  if (!again || !again.isFile() || again.ino !== st.ino || again.dev !== st.dev) throw Object.assign(new Error('changed'), { refused: true });
  fs.renameSync(at + '/' + tmp, name);
} catch (e) {
  try { fs.unlinkSync(at + '/' + tmp); } catch {}
  if (e.refused) refuse('changed');
  throw e;
}
try { fs.fsyncSync(dfd); } catch {}
done({ written: true }, 0);
`;

/** The mode apply leaves a password file with: never wider than it was, never wider than 640 (no bit for others, no group write, no execute). */
export const tightenedMode = (mode: number): number => mode & 0o640;

const octal = (mode: number) => mode.toString(8).padStart(4, '0');

/** The refusal in words, with the fix; never quotes the file's content. */
export function refusalProblem(machine: string, file: string, r: { refused: Refusal; to?: string; kind?: string; links?: number; real?: string }): VigilError {
  const where = `${machine} ${file}`;
  const text: Record<Refusal, [string, string]> = {
    symlink: [
      `is a symbolic link${r.to ? ` (to ${r.to})` : ''}: apply runs as root and does not follow links in a password file, which whoever owns the directory could point at /etc/shadow or a file root trusts`,
      `replace the link with the real file (\`cp --remove-destination "$(readlink -f ${file})" ${file}\` if the target is the application's own), or list the target's path in application.passwordFiles`,
    ],
    'not-regular': [
      `is a ${r.kind ?? 'special file'}, not a regular file`,
      `put the application's config file there, or correct the path in application.passwordFiles`,
    ],
    hardlink: [
      `has ${r.links ?? 'several'} hard links: writing it would change another file too, which may not be the application's`,
      `make it a file of its own (\`cp ${file} ${file}.new && mv ${file}.new ${file}\`), then run apply again`,
    ],
    'dir-symlink': [
      `lies in a directory reached through a symbolic link${r.real ? ` (it resolves to ${r.real})` : ''}: apply does not follow links on the way to a password file`,
      `write the real path${r.real ? ` (under ${r.real})` : ''} in application.passwordFiles`,
    ],
    'dir-missing': ['its directory does not exist', `install the application on ${machine} first, or correct the path in application.passwordFiles`],
    'too-large': ['is larger than 1 MiB, which no config file is', 'correct the path in application.passwordFiles'],
    changed: ['was replaced while apply was reading or writing it', 'run `vigil apply` again once nothing else edits the file'],
  };
  const [message, fix] = text[r.refused] ?? ['was refused', 'see docs/security.md, "Least privilege"'];
  return new VigilError('APPLY', [problem(where, message, fix)]);
}

async function runProgram(shell: RemoteShell, args: string[], input?: Buffer): Promise<Record<string, unknown>> {
  const r = await shell.exec([VIGIL_INSTALL.node, '-e', PASSWORD_FILE_PROGRAM, ...args], { timeoutMs: 30_000, ...(input ? { input } : {}) });
  let out: Record<string, unknown> | undefined;
  try {
    out = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    out = undefined;
  }
  if (out && (r.code === 0 || r.code === 3)) return out;
  throw new VigilError('REMOTE_COMMAND', [
    problem(
      `${shell.machine} ${args[1] ?? ''}`,
      `the password-file program failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-1)[0]?.slice(0, 300) ?? ''}`,
      `check that ${VIGIL_INSTALL.node} runs on ${shell.machine} (apply installs it in its files step)`,
    ),
  ]);
}

/** The file's content and identity; null when it does not exist; a refusal throws. */
export async function readPasswordFile(shell: RemoteShell, path: string): Promise<PasswordFileState | null> {
  const out = await runProgram(shell, ['read', path]);
  if (out.refused) throw refusalProblem(shell.machine, path, out as { refused: Refusal });
  if (out.missing) return null;
  return {
    content: Buffer.from(String(out.content), 'base64'),
    mode: Number(out.mode),
    uid: Number(out.uid),
    gid: Number(out.gid),
    ino: String(out.ino),
    dev: String(out.dev),
  };
}

/** Replaces the file read as `was` with `content`, keeping its owner, with `mode`; a refusal throws. */
export async function writePasswordFile(shell: RemoteShell, path: string, was: PasswordFileState, content: string | Buffer, mode: number): Promise<void> {
  const out = await runProgram(shell, ['write', path, was.ino, was.dev, octal(mode)], Buffer.from(content));
  if (out.refused) throw refusalProblem(shell.machine, path, out as { refused: Refusal });
}

/**
 * Plan on a machine where Vigil's node is not installed yet: a look through the shell that still
 * refuses a link or a special file (nothing is written). Exit 45: a link; 46: not a regular file.
 */
const PLAN_READ_SCRIPT = '[ -L "$1" ] && exit 45; [ -e "$1" ] || exit 44; [ -f "$1" ] || exit 46; exec cat -- "$1"';

export async function planReadPasswordFile(shell: RemoteShell, path: string): Promise<Buffer | null> {
  const r = await shell.exec(['sh', '-c', PLAN_READ_SCRIPT, 'vigil-plan-read', path], { timeoutMs: 30_000 });
  if (r.code === 44) return null;
  if (r.code === 45) throw refusalProblem(shell.machine, path, { refused: 'symlink' });
  if (r.code === 46) throw refusalProblem(shell.machine, path, { refused: 'not-regular' });
  if (r.code !== 0)
    throw new VigilError('REMOTE_COMMAND', [problem(`${shell.machine} ${path}`, `cannot read it (exit ${r.code})`, 'check the file on the machine')]);
  return Buffer.from(r.stdout, 'utf8');
}

/**
 * Apply's password-file step for one file: sets `file.key` to `password` and tightens the mode;
 * returns what it changed (or, with `dryRun`, would change). `source` names the cluster file in
 * the fix of a missing file.
 */
export async function setPasswordFile(shell: RemoteShell, file: PasswordFile, password: string, opts: { dryRun: boolean; source: string }): Promise<string[]> {
  const missing = () =>
    new VigilError('APPLY', [
      problem(
        `${shell.machine} ${file.path}`,
        'the application config file is missing',
        `install the application on ${shell.machine} first, or remove the file from application.passwordFiles in ${opts.source}`,
      ),
    ]);
  const set = `set ${file.key} in ${file.path} to the cluster's database password`;
  // A plan on a machine that has no Vigil node yet (before the first apply) looks through the shell.
  if (opts.dryRun && (await shell.exec(['test', '-x', VIGIL_INSTALL.node])).code !== 0) {
    const text = await planReadPasswordFile(shell, file.path);
    if (text === null) throw missing();
    return withPassword(file, text.toString('utf8'), password).changed ? [set] : [];
  }
  const st = await readPasswordFile(shell, file.path);
  if (st === null) throw missing();
  const { text, changed } = withPassword(file, st.content.toString('utf8'), password);
  const mode = tightenedMode(st.mode);
  const out = [
    ...(changed ? [set] : []),
    ...(mode !== st.mode ? [`tighten ${file.path} from mode ${octal(st.mode)} to ${octal(mode)}: it holds the database password`] : []),
  ];
  if (!opts.dryRun && out.length > 0) await writePasswordFile(shell, file.path, st, text, mode);
  return out;
}
