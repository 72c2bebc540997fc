/**
 * What apply asks a machine, in as few round trips as it can: the state of many files at once,
 * HTTP checks made from the machine itself (with the node binary of Vigil's artifact, so the
 * admin's shell needs no route to etcd's or Patroni's ports), and systemctl.
 */
import type { RemoteShell } from '../remote/types.ts';
import { VIGIL_INSTALL } from '../render/systemd.ts';
import { VigilError, problem } from '../util/errors.ts';

export interface FileState {
  sha256: string;
  /** Octal permission bits, e.g. "644". */
  mode: string;
  /** user:group */
  owner: string;
}

/** Prints, per path, "<sha256> <mode> <user:group>" or "-" when it is no regular file. Paths are arguments, never content. */
const STATE_SCRIPT = 'for p in "$@"; do if [ -f "$p" ]; then s=$(sha256sum < "$p"); echo "${s%% *} $(stat -c \'%a %U:%G\' -- "$p")"; else echo -; fi; done';

export async function fileStates(shell: RemoteShell, paths: string[]): Promise<Map<string, FileState | null>> {
  const out = new Map<string, FileState | null>();
  if (!paths.length) return out;
  const r = await shell.exec(['sh', '-c', STATE_SCRIPT, 'vigil-state', ...paths], { timeoutMs: 120_000 });
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  if (r.code !== 0 || lines.length !== paths.length) throw new VigilError('REMOTE_COMMAND', [problem(shell.machine, `cannot read the state of its files (exit ${r.code}): ${r.stderr.trim().slice(0, 300)}`, `check that sha256sum and stat work on ${shell.machine}`)]);
  paths.forEach((p, i) => {
    const [sha256, mode, owner] = lines[i]!.split(' ');
    out.set(p, sha256 === '-' || !mode || !owner ? null : { sha256: sha256!, mode, owner });
  });
  return out;
}

/** Prints, per directory, "<mode> <user:group>" or "-" when it does not exist. */
const DIR_SCRIPT = 'for p in "$@"; do if [ -d "$p" ]; then stat -c \'%a %U:%G\' -- "$p"; else echo -; fi; done';

export async function dirStates(shell: RemoteShell, paths: string[]): Promise<Map<string, { mode: string; owner: string } | null>> {
  const out = new Map<string, { mode: string; owner: string } | null>();
  if (!paths.length) return out;
  const r = await shell.exec(['sh', '-c', DIR_SCRIPT, 'vigil-dirs', ...paths], { timeoutMs: 30_000 });
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  if (r.code !== 0 || lines.length !== paths.length) throw new VigilError('REMOTE_COMMAND', [problem(shell.machine, `cannot read the state of its directories (exit ${r.code})`, `check that stat works on ${shell.machine}`)]);
  paths.forEach((p, i) => {
    const [mode, owner] = lines[i]!.split(' ');
    out.set(p, mode === '-' || !owner ? null : { mode: mode!, owner });
  });
  return out;
}

/** A GET made from the machine itself; `status` 0 when nothing answered. */
export async function remoteGet(shell: RemoteShell, url: string, timeoutMs = 3000): Promise<{ status: number; body: string; error?: string }> {
  const script = `fetch(process.argv[1],{signal:AbortSignal.timeout(${timeoutMs})}).then(async r=>process.stdout.write(JSON.stringify({status:r.status,body:await r.text()})),e=>process.stdout.write(JSON.stringify({status:0,body:'',error:String(e.cause?.code??e.name??e)})))`;
  const r = await shell.exec([VIGIL_INSTALL.node, '-e', script, url], { timeoutMs: timeoutMs + 10_000 });
  try {
    return JSON.parse(r.stdout) as { status: number; body: string; error?: string };
  } catch {
    return { status: 0, body: '', error: r.stderr.trim().split('\n')[0] || `exit ${r.code}` };
  }
}

export interface UnitState {
  active: boolean;
  enabled: boolean;
  /** The unit file is known to systemd. */
  exists: boolean;
}

/** is-active, is-enabled and whether systemd knows the unit, for each unit, in one round trip. */
export async function unitStates(shell: RemoteShell, units: string[]): Promise<Map<string, UnitState>> {
  const out = new Map<string, UnitState>();
  if (!units.length) return out;
  const script = 'for u in "$@"; do a=$(systemctl is-active "$u" 2>/dev/null); e=$(systemctl is-enabled "$u" 2>/dev/null); echo "$u ${a:-unknown} ${e:-not-found}"; done';
  const r = await shell.exec(['sh', '-c', script, 'vigil-units', ...units], { timeoutMs: 60_000 });
  for (const line of r.stdout.split('\n')) {
    const [unit, active, enabled] = line.trim().split(/\s+/);
    if (!unit || !units.includes(unit)) continue;
    out.set(unit, { active: active === 'active' || active === 'reloading', enabled: enabled === 'enabled' || enabled === 'enabled-runtime', exists: enabled !== 'not-found' && enabled !== '' });
  }
  for (const u of units) if (!out.has(u)) out.set(u, { active: false, enabled: false, exists: false });
  return out;
}

/** Runs systemctl; a failure names the unit, what failed and where to look. */
export async function systemctl(shell: RemoteShell, args: string[], timeoutMs = 120_000): Promise<void> {
  const r = await shell.exec(['systemctl', ...args], { timeoutMs });
  if (r.code !== 0) {
    const unit = args.find((a) => a.endsWith('.service')) ?? args.join(' ');
    throw new VigilError('REMOTE_COMMAND', [problem(`${shell.machine} ${unit}`, `\`systemctl ${args.join(' ')}\` failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 400)}`, `read \`journalctl -u ${unit} -n 50\` (in the lab: the machine's /var/log/vigil/) on ${shell.machine}, fix the cause and run \`vigil apply\` again`)]);
  }
}
