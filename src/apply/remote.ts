/**
 * What apply asks a machine, in as few round trips as it can: the state of many files at once,
 * HTTP checks made from the machine itself (with the node binary of Vigil's artifact, so the
 * admin's shell needs no route to etcd's or Patroni's ports), and systemctl.
 */
import { PATHS } from '../layout/paths.ts';
import type { Machine } from '../config/schema.ts';
import type { AgentStatus } from '../model/ha.ts';
import { AGENT_PORT } from '../layout/network.ts';
import { PatroniError, type PatroniTransport } from '../patroni/client.ts';
import { pkiPaths } from '../pki/ca.ts';
import { HaproxyRuntime, RuntimeApiError } from '../proxy/runtime.ts';
import type { RemoteShell } from '../remote/types.ts';
import { VIGIL_INSTALL } from '../layout/units.ts';
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
  if (r.code !== 0 || lines.length !== paths.length)
    throw new VigilError('REMOTE_COMMAND', [
      problem(
        shell.machine,
        `cannot read the state of its files (exit ${r.code}): ${r.stderr.trim().slice(0, 300)}`,
        `check that sha256sum and stat work on ${shell.machine}`,
      ),
    ]);
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
  if (r.code !== 0 || lines.length !== paths.length)
    throw new VigilError('REMOTE_COMMAND', [
      problem(shell.machine, `cannot read the state of its directories (exit ${r.code})`, `check that stat works on ${shell.machine}`),
    ]);
  paths.forEach((p, i) => {
    const [mode, owner] = lines[i]!.split(' ');
    out.set(p, mode === '-' || !owner ? null : { mode: mode!, owner });
  });
  return out;
}

/** A GET (or another method without a body) made from the machine itself; `status` 0 when nothing answered. */
export async function remoteGet(
  shell: RemoteShell,
  url: string,
  timeoutMs = 3000,
  method: 'GET' | 'OPTIONS' = 'GET',
): Promise<{ status: number; body: string; error?: string }> {
  const script = `fetch(process.argv[1],{method:process.argv[2],signal:AbortSignal.timeout(${timeoutMs})}).then(async r=>process.stdout.write(JSON.stringify({status:r.status,body:await r.text()})),e=>process.stdout.write(JSON.stringify({status:0,body:'',error:String(e.cause?.code??e.name??e)})))`;
  // The cluster CA beside the system's roots: Patroni's REST API (and etcd) answer with its certificates.
  const r = await shell.exec(['env', `NODE_EXTRA_CA_CERTS=${PATHS.clusterCaCert}`, VIGIL_INSTALL.node, '-e', script, url, method], {
    timeoutMs: timeoutMs + 10_000,
  });
  try {
    return JSON.parse(r.stdout) as { status: number; body: string; error?: string };
  } catch {
    return { status: 0, body: '', error: r.stderr.trim().split('\n')[0] || `exit ${r.code}` };
  }
}

/**
 * Patroni's REST API asked from the machine behind `shell` (src/patroni/client.ts with this
 * transport). Reads only: a request with headers (the REST password of a write action) is
 * refused, since the command line of the script is visible to every user of that machine. The
 * caller's signal is not carried to the machine; the deadline is.
 */
export function remotePatroni(shell: RemoteShell): PatroniTransport {
  return async (req) => {
    if (req.method === 'POST' || req.method === 'PATCH' || Object.keys(req.headers).length)
      throw new Error(`remotePatroni carries reads only, not ${req.method} ${req.url} with headers`);
    const r = await remoteGet(shell, req.url, req.timeoutMs, req.method);
    if (r.status !== 0) return { status: r.status, body: r.body };
    const check = `check that Patroni runs there and that ${shell.machine} reaches ${new URL(req.url).host}`;
    if (r.error === 'TimeoutError')
      throw new PatroniError('PATRONI_TIMEOUT', req.url, `no answer within ${req.timeoutMs} ms (asked from ${shell.machine})`, check);
    throw new PatroniError('PATRONI_UNREACHABLE', req.url, `no answer (asked from ${shell.machine}): ${r.error ?? 'unknown'}`, check);
  };
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
  const script =
    'for u in "$@"; do a=$(systemctl is-active "$u" 2>/dev/null); e=$(systemctl is-enabled "$u" 2>/dev/null); echo "$u ${a:-unknown} ${e:-not-found}"; done';
  const r = await shell.exec(['sh', '-c', script, 'vigil-units', ...units], { timeoutMs: 60_000 });
  for (const line of r.stdout.split('\n')) {
    const [unit, active, enabled] = line.trim().split(/\s+/);
    if (!unit || !units.includes(unit)) continue;
    out.set(unit, {
      active: active === 'active' || active === 'reloading',
      enabled: enabled === 'enabled' || enabled === 'enabled-runtime',
      exists: enabled !== 'not-found' && enabled !== '',
    });
  }
  for (const u of units) if (!out.has(u)) out.set(u, { active: false, enabled: false, exists: false });
  return out;
}

/** Runs systemctl; a failure names the unit, what failed and where to look. */
export async function systemctl(shell: RemoteShell, args: string[], timeoutMs = 120_000): Promise<void> {
  const r = await shell.exec(['systemctl', ...args], { timeoutMs });
  if (r.code !== 0) {
    const unit = args.find((a) => a.endsWith('.service')) ?? args.join(' ');
    throw new VigilError('REMOTE_COMMAND', [
      problem(
        `${shell.machine} ${unit}`,
        `\`systemctl ${args.join(' ')}\` failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 400)}`,
        `read \`journalctl -u ${unit} -n 50\` on ${shell.machine}, fix the cause and run \`vigil apply\` again`,
      ),
    ]);
  }
}

/** One command to the runtime API's socket, answer on stdout; the command is an argument (HaproxyRuntime refuses newlines and ';'). */
const RUNTIME_SCRIPT =
  "const s=require('net').connect(process.argv[1]);let o='';s.setTimeout(5000,()=>{process.stderr.write('no answer within 5 s');process.exit(3)});s.on('connect',()=>s.end(process.argv[2]+'\\n'));s.on('data',d=>o+=d);s.on('close',()=>process.stdout.write(o));s.on('error',e=>{process.stderr.write(e.message);process.exitCode=2})";

/** HAProxy's runtime API on a proxy machine, reached through the machine's shell (the artifact's node talks to the socket there). */
export function remoteRuntime(shell: RemoteShell): HaproxyRuntime {
  return new HaproxyRuntime(async (cmd) => {
    const r = await shell.exec([VIGIL_INSTALL.node, '-e', RUNTIME_SCRIPT, PATHS.haproxySocket, cmd], { timeoutMs: 15_000 });
    if (r.code !== 0)
      throw new RuntimeApiError(`HAProxy runtime API on ${shell.machine} (${PATHS.haproxySocket}): ${r.stderr.trim() || `exit ${r.code}`}`, true);
    return r.stdout;
  });
}

/** GET from the machine's agent with the machine's own certificate: prints the HTTP status, a newline, then the body; `0` when it does not answer. */
const AGENT_GET_SCRIPT =
  "const https=require('https'),fs=require('fs');const [u,ca,cert,key]=process.argv.slice(1);const q=https.get(u,{ca:fs.readFileSync(ca),cert:fs.readFileSync(cert),key:fs.readFileSync(key),timeout:3000},r=>{let b='';r.setEncoding('utf8');r.on('data',c=>b+=c);r.on('end',()=>process.stdout.write(r.statusCode+'\\n'+b))});q.on('timeout',()=>q.destroy(new Error('timeout')));q.on('error',()=>process.stdout.write('0'))";

/**
 * A GET from the machine's agent, asked on the machine with its own certificate: the HTTP status
 * (0 when it does not answer) and the body. A script rather than src/agent/client.ts: the
 * machine's private key never leaves it, and the admin's shell needs no route to the agent's port.
 */
async function agentGet(shell: RemoteShell, m: Machine, path: string): Promise<{ status: number; body: string }> {
  return machineGet(shell, m, `https://${m.address}:${AGENT_PORT}${path}`);
}

/**
 * An HTTPS GET made on machine `m` (behind `shell`) with `m`'s own certificate, trusting the
 * cluster CA only: an agent's API, or etcd's /health and /metrics (etcd asks every client for a
 * certificate). The status is 0 when nothing answered (or the TLS handshake failed).
 */
export async function machineGet(shell: RemoteShell, m: Machine, url: string): Promise<{ status: number; body: string }> {
  const pki = pkiPaths(m.name, PATHS.pkiDir);
  const r = await shell.exec([VIGIL_INSTALL.node, '-e', AGENT_GET_SCRIPT, url, pki.ca, pki.cert, pki.key], {
    timeoutMs: 15_000,
  });
  const nl = r.stdout.indexOf('\n');
  return { status: Number(nl < 0 ? r.stdout.trim() : r.stdout.slice(0, nl)) || 0, body: nl < 0 ? '' : r.stdout.slice(nl + 1) };
}

/** What the machine's agent answers on /role (200: active, 503: not); 0 when it does not answer. */
export async function agentRole(shell: RemoteShell, m: Machine): Promise<number> {
  return (await agentGet(shell, m, '/role')).status;
}

/** Why the machine's agent does not serve, from its /status, in words (for apply's errors); a sentence also when it cannot be asked. */
export async function agentWhyNotServing(shell: RemoteShell, m: Machine): Promise<string> {
  const r = await agentGet(shell, m, '/status').catch((err: Error) => ({ status: 0, body: err.message }));
  if (r.status !== 200) return r.status === 0 ? 'its agent does not answer on /status' : `its agent answers ${r.status} on /status`;
  try {
    const s = JSON.parse(r.body) as AgentStatus;
    if (!s.active) return `its agent says it is not active: ${s.inactiveReason ?? 'no reason given'}`;
    if (!s.appHealthy) return "its agent is active, but the application's health check on the machine fails";
    return 'its agent now says it is active and the application healthy';
  } catch {
    return 'its agent answered /status with something other than JSON';
  }
}
