/**
 * What doctor asks of one machine through its RemoteShell, all probes at once, each with its own
 * deadline. Only the results go back: listening sockets, owners and modes, free space, port
 * connections to the other machines, HAProxy's config check, certificates (never a private key:
 * its public half is derived on the machine), password files reduced to same/differs, program
 * digests. Nothing here decides what is wrong; evaluate.ts does.
 */
import { ROOTS, PATHS } from '../layout/paths.ts';
import { appPort } from '../layout/backend.ts';
import type { Cluster, Machine, Secrets } from '../config/schema.ts';
import type { RenderedFile } from '../render/file.ts';
import type { RemoteShell } from '../remote/types.ts';
import { BINARIES, UNITS, WATCHDOG_DEVICE } from '../layout/units.ts';
import { portRequirements, pathRules } from './expect.ts';
import { parseDf, parseExecStart, parseSha256sum, parseSs, parseStat, programOf, STAT_FORMAT, unitOfCgroup } from '../facts/parse.ts';
import { comparePasswordFile } from '../facts/password-files.ts';
import { clock, connect, errorText, firstLine, runOn } from '../facts/probe.ts';
import { gatherBackendTls, gatherNginxCert, gatherTlsEndpoints } from './gather-tls.ts';
import { summarizeKeepalived } from '../facts/keepalived.ts';
import { VRRP_AUTH_LENGTH, runsKeepalived } from '../render/keepalived.ts';
import {
  failed,
  got,
  type DbSafetyFacts,
  type EntryPointFacts,
  type Identity,
  type MachineFacts,
  type PasswordFileFact,
  type Probe,
  type ProgramDigest,
  type SystemdFacts,
} from './types.ts';

export interface MachineGatherOptions {
  cluster: Cluster;
  secrets: Secrets;
  rendered: RenderedFile[];
  /** Deadline of each command on the machine. */
  probeTimeoutMs: number;
  /** Deadline of one TCP connection attempt. */
  connectTimeoutMs: number;
}

async function guard<T>(fn: () => Promise<Probe<T>>): Promise<Probe<T>> {
  try {
    return await fn();
  } catch (err) {
    return failed(errorText(err));
  }
}

async function identity(shell: RemoteShell, label: Identity['label'], certPath: string, keyPath: string, timeoutMs: number): Promise<Identity> {
  const exists = async (p: string) => (await shell.exec(['test', '-e', p], { timeoutMs })).code === 0;
  const derive = async (argv: string[], path: string): Promise<Probe<string | null>> => {
    const r = await runOn(shell, argv, timeoutMs);
    if (r.ok) return got(r.value.stdout);
    return (await exists(path).catch(() => true)) ? r : got(null);
  };
  // A bundle holds the key too: its certificate is extracted on the machine, so the key stays there.
  const certPem =
    certPath === keyPath
      ? await guard(() => derive(['openssl', 'x509', '-in', certPath], certPath))
      : await guard(async () => got((await shell.readFile(certPath))?.toString('utf8') ?? null));
  const keyPublicPem = await guard(() => derive(['openssl', 'pkey', '-pubout', '-in', keyPath], keyPath));
  return { label, certPath, keyPath, certPem, keyPublicPem };
}

async function pki(shell: RemoteShell, cluster: Cluster, m: Machine, timeoutMs: number): Promise<Probe<{ caPem: string | null; identities: Identity[] }>> {
  return guard(async () => {
    const caPem = (await shell.readFile(`${PATHS.pkiDir}/ca.pem`))?.toString('utf8') ?? null;
    const wanted: Promise<Identity>[] = [identity(shell, 'machine', `${PATHS.pkiDir}/${m.name}.pem`, `${PATHS.pkiDir}/${m.name}.key`, timeoutMs)];
    if (m.roles.includes('proxy')) {
      wanted.push(identity(shell, 'haproxy-check', PATHS.haproxyCheckBundle, PATHS.haproxyCheckBundle, timeoutMs));
      if (cluster.proxy.tlsBundle) wanted.push(identity(shell, 'tls-bundle', cluster.proxy.tlsBundle, cluster.proxy.tlsBundle, timeoutMs));
    }
    return got({ caPem, identities: await Promise.all(wanted) });
  });
}

/** "link|MODE|TARGET" for a symbolic link, "file|MODE" otherwise (stat does not follow a link without -L); exit 1 when absent. */
const PASSWORD_LOOK_SCRIPT =
  '[ -L "$1" ] && { printf "link|%s|%s" "$(stat -c %a -- "$1")" "$(readlink -- "$1")"; exit 0; }; [ -e "$1" ] || exit 1; printf "file|%s" "$(stat -c %a -- "$1")"';

async function passwords(shell: RemoteShell, cluster: Cluster, secrets: Secrets): Promise<PasswordFileFact[]> {
  return Promise.all(
    cluster.application.passwordFiles.map(async (f): Promise<PasswordFileFact> => {
      try {
        // Looked at without following a link: a password file that is one is reported, never read through (H3).
        const look = await shell.exec(['sh', '-c', PASSWORD_LOOK_SCRIPT, 'vigil-look', f.path], { timeoutMs: 15_000 });
        const [kind, mode, ...to] = look.stdout.trim().split('|');
        if (look.code === 0 && kind === 'link') return { path: f.path, key: f.key, status: 'unreadable', detail: 'a symbolic link', symlinkTo: to.join('|') };
        const bits = look.code === 0 && mode !== undefined && /^[0-7]+$/.test(mode) ? Number.parseInt(mode, 8) : undefined;
        const content = await shell.readFile(f.path);
        const fact = comparePasswordFile(f, content === null ? null : content.toString('utf8'), secrets.appDbPassword);
        return bits === undefined ? fact : { ...fact, mode: bits };
      } catch (err) {
        return { path: f.path, key: f.key, status: 'unreadable', detail: errorText(err) };
      }
    }),
  );
}

/** Each application service's program (see parse.ts programOf) and its SHA-256. */
async function appVersion(shell: RemoteShell, cluster: Cluster, timeoutMs: number): Promise<Probe<ProgramDigest[]>> {
  return guard(async () => {
    const programs: { service: string; program: string }[] = [];
    for (const s of cluster.application.services) {
      const r = await runOn(shell, ['systemctl', 'show', '-p', 'ExecStart', '--value', s.unit], timeoutMs);
      if (!r.ok) return r;
      const argv = parseExecStart(r.value.stdout);
      const p = argv ? programOf(argv) : null;
      if (p) programs.push({ service: s.name, program: p });
    }
    if (programs.length === 0) return got([]);
    // A bare name is found through the machine's PATH, as the service finds it.
    for (const p of programs.filter((x) => !x.program.startsWith('/'))) {
      const r = await runOn(shell, ['sh', '-c', 'command -v -- "$0"', p.program], timeoutMs, [0, 1, 127]);
      if (r.ok && r.value.stdout.trim().startsWith('/')) p.program = r.value.stdout.trim();
    }
    // Exit 1 when a file is missing; the others are still listed.
    const r = await runOn(shell, ['sha256sum', '--', ...new Set(programs.map((p) => p.program))], timeoutMs, [0, 1]);
    if (!r.ok) return r;
    const sums = parseSha256sum(r.value.stdout);
    return got(programs.map((p) => ({ ...p, sha256: sums.get(p.program) ?? null })));
  });
}

async function systemdFacts(shell: RemoteShell, cluster: Cluster, m: Machine, timeoutMs: number): Promise<SystemdFacts> {
  const [ntp, fw, enabled, deadman] = await Promise.all([
    runOn(shell, ['timedatectl', 'show', '-p', 'NTPSynchronized', '--value'], timeoutMs),
    // is-active exits non-zero when a unit is inactive; its lines still say which.
    runOn(shell, ['systemctl', 'is-active', 'firewalld.service', 'ufw.service'], timeoutMs, [0, 1, 3, 4]),
    guard(async () => {
      if (!m.roles.includes('app')) return got([]);
      const units = [...new Set([...cluster.application.services.map((s) => s.unit), 'nginx.service'])];
      const states = await Promise.all(
        units.map(async (unit) => ({ unit, state: (await shell.exec(['systemctl', 'is-enabled', unit], { timeoutMs })).stdout.trim() || 'not-found' })),
      );
      return got(states);
    }),
    m.roles.includes('app') ? runOn(shell, ['systemctl', 'is-active', UNITS.deadman], timeoutMs, [0, 1, 3, 4]) : undefined,
  ]);
  // One state a line, in the order asked: firewalld, then ufw.
  const [firewalld, ufw] = fw.ok ? fw.value.stdout.split('\n').map((l) => l.trim() === 'active') : [];
  const firewall: SystemdFacts['firewall'] = fw.ok ? got(firewalld ? 'firewalld' : ufw ? 'ufw' : 'none') : fw;
  return {
    ntpSynchronized: ntp.ok ? got(ntp.value.stdout.trim() === 'yes') : ntp,
    firewall,
    enabledUnits: enabled,
    ...(deadman ? { deadman: deadman.ok ? got(deadman.value.stdout.trim() || 'unknown') : deadman } : {}),
  };
}

async function dbSafetyFacts(shell: RemoteShell, timeoutMs: number): Promise<DbSafetyFacts> {
  const [version, device] = await Promise.all([
    runOn(shell, [BINARIES.patroni, '--version'], timeoutMs),
    runOn(shell, ['test', '-e', WATCHDOG_DEVICE], timeoutMs, [0, 1]),
  ]);
  return {
    patroniVersion: version.ok ? got(firstLine(version.value.stdout)) : version,
    watchdogDevice: device.ok ? got(device.value.code === 0) : device,
  };
}

/** keepalived and the floating address on a proxy machine (`proxy.virtualAddress`). */
async function entryPointFacts(shell: RemoteShell, cluster: Cluster, secrets: Secrets, rendered: RenderedFile[], timeoutMs: number): Promise<EntryPointFacts> {
  const vip = cluster.proxy.virtualAddress!;
  // The password's part keepalived.conf holds: never carried out of this function in any output.
  const auth = secrets.vrrpPassword?.slice(0, VRRP_AUTH_LENGTH);
  const redact = (text: string) => (auth ? text.split(auth).join('<vrrpPassword>') : text);
  const [addrs, unit, test, file] = await Promise.all([
    runOn(shell, ['ip', '-4', '-o', 'addr', 'show'], timeoutMs),
    runOn(shell, ['systemctl', 'is-active', UNITS.keepalived], timeoutMs, [0, 1, 3, 4]),
    runOn(shell, [BINARIES.keepalived, '--config-test', '--use-file', PATHS.keepalivedConfig], timeoutMs, [0, 1, 2, 3, 4, 5, 6, 7]),
    guard(async () => {
      const content = await shell.readFile(PATHS.keepalivedConfig);
      if (content === null) return got(null);
      const want = rendered.find((f) => f.path === PATHS.keepalivedConfig)?.content;
      return got({ asRendered: want !== undefined && content.toString('utf8') === want, summary: summarizeKeepalived(content.toString('utf8')) });
    }),
  ]);
  return {
    holds: addrs.ok ? got(new RegExp(`\\binet ${vip.replaceAll('.', '\\.')}/`).test(addrs.value.stdout)) : addrs,
    unit: unit.ok ? got(unit.value.stdout.trim() || 'unknown') : unit,
    config: test.ok
      ? got({
          valid: test.value.code === 0,
          output: redact(`${test.value.stdout}\n${test.value.stderr}`)
            .split('\n')
            .filter((l) => l.trim())
            .slice(0, 5)
            .join('\n'),
        })
      : test,
    file,
  };
}

/**
 * Every probe only reads, so one that failed in transport (an error marked retryable: the
 * connection dropped under the command) is run once more before it counts as failed.
 */
function retrying(shell: RemoteShell): RemoteShell {
  const again = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      if ((err as { retryable?: unknown }).retryable !== true) throw err;
      return fn();
    }
  };
  return {
    machine: shell.machine,
    exec: (argv, opts) => again(() => shell.exec(argv, opts)),
    readFile: (path) => again(() => shell.readFile(path)),
    writeFile: () => Promise.reject(new Error('doctor writes nothing on a machine')),
    close: () => shell.close(),
  };
}

/** Every probe of one machine. A machine where not even `true` runs is reported unreachable and probed no further. */
export async function gatherMachine(remote: RemoteShell, m: Machine, o: MachineGatherOptions): Promise<MachineFacts> {
  const shell = retrying(remote);
  const base = { name: m.name, address: m.address, roles: m.roles };
  const t = o.probeTimeoutMs;
  const alive = await runOn(shell, ['true'], t);
  if (!alive.ok) return { ...base, reachable: failed(alive.error) };
  const { cluster } = o;
  const has = (r: 'app' | 'db' | 'etcd' | 'proxy') => m.roles.includes(r);
  const rules = pathRules(cluster, m, o.rendered);
  // Where the components and the application write: each may be a filesystem of its own.
  const diskPaths = [
    ROOTS.data,
    ROOTS.log,
    ...(has('db') ? [PATHS.pgData] : []),
    ...(has('etcd') ? [PATHS.etcdData] : []),
    ...(has('app') ? cluster.application.syncDirs : []),
  ];
  const targets = new Map(cluster.machines.map((x) => [x.name, x]));
  const outgoing = portRequirements(cluster).filter((r) => r.from.includes(m.name));

  const [clockP, listeners, paths, disk, ports, haproxyConfig, pkiP, pw, version, systemd, dbSafety, tls, backend, nginxCert] = await Promise.all([
    clock(shell, t),
    guard(async () => {
      const r = await runOn(shell, ['ss', '-Hltnp'], t);
      return r.ok ? got(parseSs(r.value.stdout)) : r;
    }),
    guard(async () => {
      // stat exits 1 when a path is missing and still prints the others.
      const r = await runOn(shell, ['stat', '-L', '--printf', STAT_FORMAT, '--', ...rules.map((x) => x.path)], t, [0, 1]);
      return r.ok ? got(parseStat(r.value.stdout)) : r;
    }),
    guard(async () => {
      const r = await runOn(shell, ['df', '-B1', '--output=file,target,size,avail', '--', ...diskPaths], t, [0, 1]);
      return r.ok ? got(parseDf(r.value.stdout)) : r;
    }),
    Promise.all(outgoing.map((r) => connect(shell, m.name, targets.get(r.to)!, r.port, o.connectTimeoutMs))),
    has('proxy')
      ? guard(async () => {
          const r = await runOn(shell, ['haproxy', '-c', '-f', PATHS.haproxyConfig], t, [0, 1, 2]);
          if (!r.ok) return r;
          const output = `${r.value.stdout}\n${r.value.stderr}`
            .split('\n')
            .filter((l) => /ALERT|\berror\b/i.test(l))
            .slice(0, 5)
            .join('\n');
          return got({ valid: r.value.code === 0, output });
        })
      : undefined,
    pki(shell, cluster, m, t),
    has('app') ? passwords(shell, cluster, o.secrets) : undefined,
    has('app') ? appVersion(shell, cluster, t) : undefined,
    systemdFacts(shell, cluster, m, t),
    has('db') ? dbSafetyFacts(shell, t) : undefined,
    has('app') && cluster.application.tlsEndpoints.length > 0 ? gatherTlsEndpoints(shell, cluster, t) : undefined,
    has('proxy') ? gatherBackendTls(shell, cluster, t) : undefined,
    has('app') ? gatherNginxCert(shell, cluster) : undefined,
  ]);
  const entry = runsKeepalived(cluster, m) ? await entryPointFacts(shell, cluster, o.secrets, o.rendered, t) : undefined;

  const facts: MachineFacts = { ...base, reachable: got(true), clock: clockP, listeners, paths, disk, ports, pki: pkiP };
  if (haproxyConfig) facts.haproxyConfig = haproxyConfig;
  if (pw) facts.passwords = pw;
  if (version) facts.appVersion = version;
  if (systemd) facts.systemd = systemd;
  if (dbSafety) facts.dbSafety = dbSafety;
  if (tls) facts.tlsEndpoints = tls;
  if (backend) facts.backendTls = backend;
  if (nginxCert) facts.nginxCert = nginxCert;
  if (entry) facts.entryPoint = entry;
  // Which unit runs what listens on the application port: the fix for a stray nginx depends on it.
  if (has('app') && listeners.ok) {
    const pids = listeners.value.filter((l) => l.port === appPort(cluster)).flatMap((l) => l.processes.map((p) => p.pid));
    facts.processUnits = {};
    for (const pid of new Set(pids))
      facts.processUnits[pid] = unitOfCgroup((await shell.readFile(`/proc/${pid}/cgroup`).catch(() => null))?.toString('utf8') ?? '');
  }
  return facts;
}
