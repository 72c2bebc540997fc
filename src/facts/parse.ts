/**
 * Parsers for what doctor's probes print on a machine (ss, stat, df, sha256sum, systemctl,
 * /proc/PID/cgroup) and for HAProxy's stats CSV. Pure, so each is tested on recorded output.
 * The probes run with LANG=C and GNU coreutils / iproute2, which Ubuntu and RHEL both ship.
 */
import { basename } from 'node:path';
import type { ServerState } from '../proxy/runtime.ts';
import type { DiskUsage, Listener, PathStat } from './probe.ts';

/** `ss -Hltnp`: one listening TCP socket a line, with the processes that hold it. */
export function parseSs(text: string): Listener[] {
  const out: Listener[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || f[0] !== 'LISTEN') continue;
    const local = f[3]!;
    const colon = local.lastIndexOf(':');
    const port = Number(local.slice(colon + 1));
    if (colon < 0 || !Number.isInteger(port)) continue;
    // "127.0.0.1%lo:53" carries the interface; "[::]" the IPv6 brackets.
    const address = local.slice(0, colon).replace(/%.*$/, '');
    const processes = [...line.matchAll(/\("([^"]*)",pid=(\d+)/g)].map((m) => ({ name: m[1]!, pid: Number(m[2]) }));
    out.push({ address, port, processes });
  }
  return out;
}

/** Whether a listener accepts connections on `address` (bound to it or to every address). */
export function listensOn(l: Listener, address: string): boolean {
  const a = l.address.replace(/^\[|\]$/g, '');
  return a === '*' || a === '0.0.0.0' || a === '::' || a === address || a === `::ffff:${address}`;
}

export const isLoopback = (l: Listener): boolean => /^(127\.|\[?::1\]?$|localhost)/.test(l.address);

/** The format doctor gives `stat --printf`: name, user, group, octal mode, type, tab-separated. */
export const STAT_FORMAT = '%n\t%U\t%G\t%a\t%F\n';

export function parseStat(text: string): PathStat[] {
  return text
    .split('\n')
    .map((line) => line.split('\t'))
    .filter((f) => f.length === 5)
    .map(([path, user, group, mode, type]) => ({
      path: path!,
      user: user!,
      group: group!,
      mode: parseInt(mode!, 8) & 0o7777,
      type: type === 'directory' ? 'directory' : type!.includes('regular') ? 'file' : 'other',
    }));
}

/** `df -B1 --output=file,target,size,avail PATH...`: a header, then one line per path that exists. */
export function parseDf(text: string): DiskUsage[] {
  return text
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length === 4 && /^\d+$/.test(f[2]!) && /^\d+$/.test(f[3]!))
    .map(([path, mount, size, avail]) => ({ path: path!, mount: mount!, totalBytes: Number(size), freeBytes: Number(avail) }));
}

/** `sha256sum -- FILE...`: "<hex>  <path>" per readable file. */
export function parseSha256sum(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\\?([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (m) out.set(m[2]!, m[1]!);
  }
  return out;
}

/**
 * `systemctl show -p ExecStart --value UNIT`: "{ path=/usr/sbin/nginx ; argv[]=/usr/sbin/nginx -c
 * /etc/vigil/nginx.conf ; ignore_errors=no ; ... }". Returns argv of the first command.
 */
export function parseExecStart(text: string): string[] | null {
  const m = /argv\[\]=(.*?) ;/.exec(text);
  if (!m) return null;
  return m[1]!.split(/\s+/).filter(Boolean);
}

const INTERPRETERS = new Set(['node', 'nodejs', 'python', 'python3', 'java', 'bash', 'sh', 'perl', 'ruby', 'php', 'dotnet']);

/**
 * The file whose content is the service's version: the script or archive an interpreter runs
 * (`node /opt/vigil/lib/vigil.mjs`, `java -jar app.jar`), otherwise the executable itself.
 */
export function programOf(argv: readonly string[]): string | null {
  const exe = argv[0];
  if (!exe) return null;
  if (!INTERPRETERS.has(basename(exe).replace(/[0-9.]+$/, '') || basename(exe))) return exe;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-jar' && argv[i + 1]) return argv[i + 1]!;
    if (!a.startsWith('-')) return a;
  }
  return exe;
}

/** The systemd unit a process belongs to, from /proc/PID/cgroup ("0::/system.slice/nginx.service"). */
export function unitOfCgroup(text: string): string | null {
  for (const line of text.split('\n')) {
    const path = line.split(':').slice(2).join(':');
    const unit = path
      .split('/')
      .reverse()
      .find((p) => /\.(service|scope)$/.test(p));
    if (unit && unit.endsWith('.service')) return unit;
  }
  return null;
}

/**
 * HAProxy's stats page as CSV (`/;csv`): one line per frontend, server and backend, the header
 * starting with "# pxname,svname,...". A server's `status` is UP, DOWN, MAINT, DRAIN, NOLB or
 * "no check", possibly followed by a transition ("UP 1/2", "MAINT (via app/app1)"). "no check"
 * is a server HAProxy takes as up without checking it: one configured without `check`, or one
 * whose checks are paused (`disable health`); the CSV does not tell the two apart.
 */
export function parseStatsCsv(text: string): ServerState[] {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const header = lines.find((l) => l.startsWith('# '));
  if (!header) throw new Error(`not HAProxy's stats CSV: ${text.slice(0, 80)}`);
  const cols = header.slice(2).split(',');
  const [px, sv, st] = ['pxname', 'svname', 'status'].map((c) => cols.indexOf(c));
  if (px === undefined || sv === undefined || st === undefined || px < 0 || sv < 0 || st < 0)
    throw new Error("HAProxy's stats CSV lacks pxname, svname or status");
  return lines
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.split(','))
    .filter((f) => f[sv] !== 'FRONTEND' && f[sv] !== 'BACKEND')
    .map((f) => {
      const status = (f[st] ?? '').toUpperCase();
      const admin = status.startsWith('MAINT') ? 'maint' : status.startsWith('DRAIN') ? 'drain' : 'ready';
      const unchecked = status === 'NO CHECK';
      const op = unchecked || status.startsWith('UP') || status.startsWith('NOLB') || status.startsWith('DRAIN') ? 'up' : 'down';
      return { backend: f[px]!, server: f[sv]!, admin, op, checks: unchecked ? 'none' : 'enabled' } satisfies ServerState;
    });
}
