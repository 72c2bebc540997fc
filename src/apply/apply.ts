/**
 * `vigil apply` and `vigil plan`: bring every machine to the state the cluster file describes,
 * over each machine's shell (SSH with the pinned host keys, or the lab).
 *
 * Every step first looks at the machine and changes only what differs, so a converged cluster
 * gets no change at all, and a run that stopped half-way (a machine down, a package mirror
 * missing) resumes where it stopped when run again. `plan` runs the same looks and changes
 * nothing. The order:
 *
 *   1. preflight (src/apply/preflight.ts) on every machine; nothing is touched when it fails
 *   2. per machine, all machines at once: packages, the distribution's own services stopped,
 *      directories, files (configuration, units, cluster file, secrets on the observer, Vigil's
 *      artifact), certificates, HAProxy's bundle for :443 (src/apply/tls.ts), the database
 *      password in the application's config files, the file-sync key
 *   3. file sync's trust between the app machines: authorized keys, pinned host keys, sshd
 *   4. services, tier by tier (src/apply/services.ts): etcd (healthy), Patroni (a primary),
 *      HAProxy, the application's database, the agents, the observer; then the application
 *      answers through the proxy
 *
 * A failure stops the run with the machine, the step and the fix (error code APPLY).
 */
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { alertProblems } from '../config/alerts.ts';
import { secretsPath } from '../config/load.ts';
import { PATHS } from '../layout/paths.ts';
import { withRole, type Machine } from '../config/schema.ts';
import { CA_CERT_FILE, certificateInfo, issueCertificate, loadCa, machinePkiFiles, pemBundle, type CertUsage, type ClusterCa } from '../pki/ca.ts';
import { refappTlsEndpoint, runsRefapp } from '../render/refapp.ts';
import { hostPattern, parseKnownHosts } from '../remote/known-hosts.ts';
import type { RemoteShell } from '../remote/types.ts';
import { postgresBinDir } from '../render/patroni.ts';
import { UNITS, VIGIL_INSTALL } from '../layout/units.ts';
import { authorizedKeyLine } from '../sync/keys.ts';
import { SYNC_PATHS } from '../sync/protocol.ts';
import { VigilError, problem } from '../util/errors.ts';
import { buildArtifact, type Artifact } from './artifact.ts';
import { daemonUnits, desiredDirs, desiredFiles, sha256, usesBackendCa, type DesiredFile } from './desired.ts';
import { DISTRO_SERVICES, installCommand, installFix, missingPackages, packagesFor, type PackageManager } from './packages.ts';
import { installOffline, offlineProblem, openOfflineBundle, type OfflineSource } from './offline.ts';
import { setPasswordFile } from './password-file.ts';
import { evaluatePreflight, gatherPreflight, type PreflightFacts } from './preflight.ts';
import { dirStates, fileStates, systemctl, unitStates } from './remote.ts';
import { Run, eachMachine, step, type ApplyOptions, type ApplyReport, type ApplyStep } from './run.ts';
import { services, verify } from './services.ts';
import { RENEW_BEFORE_MS, backendCaFile, issueSiteBundle, issuedByCa, ownBundle, remoteKeyMatches, siteBundleState, siteNames } from './tls.ts';

export type { ApplyOptions, ApplyReport, ApplyStep, Change } from './run.ts';

/** The drop-in that makes sshd read file sync's authorized keys besides root's own. */
export const SSHD_DROP_IN = '/etc/ssh/sshd_config.d/50-vigil-sync.conf';
const sshdDropIn = () =>
  `# Written by \`vigil apply\`: sshd also reads file sync's keys (each a forced command; src/sync/keys.ts).\nAuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2 ${SYNC_PATHS.authorizedKeys}\n`;

export async function applyCluster(o: ApplyOptions): Promise<ApplyReport> {
  const started = performance.now();
  const run = new Run(o);
  const { cluster } = o;
  // An alert secret that would cross the network in clear (M6) is refused before any machine is touched.
  const alertIssues = alertProblems(cluster.alerts, o.secrets, cluster.source, 'the secrets file');
  if (alertIssues.length > 0) throw new VigilError('CONFIG_INVALID', alertIssues);
  const shells = new Map<string, RemoteShell>();
  // Your certificate for :443 is checked before any machine is touched.
  const own = await ownBundle(cluster);
  if (own && own.notAfter.getTime() - Date.now() < RENEW_BEFORE_MS)
    o.progress(`warning: the certificate for :443 (proxy.tlsCertificate) expires on ${own.notAfter.toISOString().slice(0, 10)}: renew it with your CA`);
  const ownFile: DesiredFile | undefined = own && {
    path: cluster.proxy.tlsBundle!,
    content: own.text,
    sha256: sha256(own.text),
    mode: 0o600,
    owner: 'root:root',
    secret: true,
    affects: [{ unit: UNITS.haproxy, action: 'reload' }],
  };
  // Your CA for the app machines' certificates, read before any machine is touched.
  const caFile = await backendCaFile(cluster, async () => (await loadCa(o.pkiDir)).certPem);
  const workDir = await mkdtemp(join(tmpdir(), 'vigil-apply-'));
  try {
    o.progress(`connect: ${cluster.machines.length} machines ${o.transport ?? 'over SSH, host keys checked against the pinned ones'}`);
    await eachMachine(cluster.machines, async (m) => {
      const shell = await step(m.name, 'connect', async () => {
        const s = await o.openShell(m);
        try {
          const r = await s.exec(['true'], { timeoutMs: 20_000 });
          if (r.code !== 0) throw new Error(`a plain \`true\` failed (exit ${r.code}): ${r.stderr.trim()}`);
        } catch (err) {
          // Not kept in `shells`, so closed here: an open connection would keep the process from exiting.
          await s.close().catch(() => {});
          throw err;
        }
        return s;
      });
      shells.set(m.name, shell);
    });
    const sh = (m: Machine) => shells.get(m.name)!;

    const facts = await preflight(o, run, sh);
    const pms = new Map(facts.map((f) => [f.machine, f.packageManager as PackageManager]));
    const releases = new Map(facts.map((f) => [f.machine, f.os ? `${f.os.id}/${f.os.versionId}` : 'an unknown release']));
    let offline: OfflineSource | undefined;
    if (o.offline) {
      o.progress(`offline: verifying ${o.offline.bundle} against ${o.offline.trustPath}; no package mirror is used`);
      offline = await openOfflineBundle(o.offline.bundle, o.offline.trustPath, workDir, o.progress);
      await offlineCheck(o, offline, sh, pms, releases);
    }

    o.progress('artifact: bundling Vigil for the machines (Node.js, the CLI, the file-sync receiver, the reference application)');
    const artifact = await buildArtifact(join(workDir, 'artifact'));
    const input = {
      cluster,
      secrets: o.secrets,
      clusterText: await readFile(o.clusterFile, 'utf8'),
      secretsText: await readFile(secretsPath(cluster), 'utf8'),
      artifact,
    };
    const ca = await loadCa(o.pkiDir);
    await eachMachine(cluster.machines, async (m) => {
      const shell = sh(m);
      await step(m.name, 'packages', () => packages(run, shell, m, pms.get(m.name)!, offline && { src: offline, release: releases.get(m.name)! }));
      if (m.roles.includes('db') && pms.get(m.name) === 'dnf') await step(m.name, 'packages', () => pgdgBinLink(run, shell, m));
      await step(m.name, 'distro-services', () => distroServices(run, shell, m));
      await step(m.name, 'files', () => archCheck(shell, artifact));
      await step(m.name, 'directories', () => directories(run, shell, m));
      const wanted = desiredFiles(input, m);
      await step(m.name, 'files', () => files(run, shell, m, wanted));
      await step(m.name, 'certificates', () => certificates(run, shell, m, ca));
      if (runsRefapp(cluster, m) && refappTlsEndpoint(cluster))
        await step(m.name, 'certificates', () => serverCertificate(run, shell, m, ca, refappServerCert()));
      if (m.roles.includes('app') && cluster.application.backendTls?.ca === 'cluster')
        await step(m.name, 'certificates', () => serverCertificate(run, shell, m, ca, nginxServerCert(m)));
      if (m.roles.includes('etcd')) await step(m.name, 'certificates', () => serverCertificate(run, shell, m, ca, etcdServerCert()));
      if (m.roles.includes('db')) {
        await step(m.name, 'certificates', () => serverCertificate(run, shell, m, ca, patroniEtcdCert()));
        await step(m.name, 'certificates', () => serverCertificate(run, shell, m, ca, patroniRestCert(m)));
      }
      if (caFile && usesBackendCa(m)) {
        const file = { ...caFile, affects: m.roles.includes('proxy') ? [{ unit: UNITS.haproxy, action: 'reload' as const }] : [] };
        await step(m.name, 'tls', () => files(run, shell, m, [file], 'tls'));
      }
      if (m.roles.includes('proxy') && cluster.proxy.tlsBundle)
        await step(m.name, 'tls', () => (ownFile ? files(run, shell, m, [ownFile], 'tls') : siteBundle(run, shell, m, ca)));
      if (m.roles.includes('app')) {
        await step(m.name, 'passwords', () => passwords(run, shell, m, new Set(wanted.map((f) => f.path))));
        await step(m.name, 'sync-keys', () => syncKey(run, shell, m));
      }
    });
    await syncTrust(run, sh);
    await services(run, sh);
    const verified = await verify(run, sh);
    const seconds = (performance.now() - started) / 1000;
    const machines = new Set(run.changes.map((c) => c.machine)).size;
    if (o.dryRun)
      o.progress(
        run.changes.length
          ? `plan: ${run.changes.length} change(s) on ${machines} machine(s); run \`vigil apply\` to make them`
          : 'plan: no change; every machine is as the cluster file describes',
      );
    else
      o.progress(
        run.changes.length
          ? `apply: ${run.changes.length} change(s) on ${machines} machine(s); cluster verified in ${seconds.toFixed(1)} s`
          : `apply: no change; every machine is as the cluster file describes (checked in ${seconds.toFixed(1)} s)`,
      );
    return { changes: run.changes, seconds, verified };
  } finally {
    await Promise.all([...shells.values()].map((s) => s.close().catch(() => {})));
    await rm(workDir, { recursive: true, force: true });
  }
}

async function preflight(o: ApplyOptions, run: Run, sh: (m: Machine) => RemoteShell): Promise<PreflightFacts[]> {
  o.progress('preflight: OS, sudo, package manager, ports free and reachable, clocks, disk');
  // A port held by Vigil's own running unit (an earlier apply) is no obstacle: gatherPreflight knows.
  const facts = await Promise.all(o.cluster.machines.map((m) => gatherPreflight(sh(m), m, o.cluster)));
  const findings = evaluatePreflight(facts, o.cluster);
  for (const f of findings.filter((x) => x.severity === 'warn')) run.note(f.machine, 'preflight', `warning: ${f.what} (${f.fix})`);
  const fails = findings.filter((x) => x.severity === 'fail');
  if (fails.length)
    throw new VigilError(
      'APPLY',
      fails.map((f) => problem(`${f.machine}, step preflight (${f.check})`, `${f.what}: ${f.why}`, f.fix)),
    );
  return facts;
}

/**
 * Before any machine installs anything: the bundle has what every machine misses (a set for its
 * release with every missing package), and no machine uses dnf. Else apply stops here, naming
 * every machine and package, with nothing installed anywhere.
 */
async function offlineCheck(
  o: ApplyOptions,
  src: OfflineSource,
  sh: (m: Machine) => RemoteShell,
  pms: Map<string, PackageManager>,
  releases: Map<string, string>,
): Promise<void> {
  const problems = await Promise.all(
    o.cluster.machines.map(async (m) => {
      const pm = pms.get(m.name)!;
      const missing = await missingPackages(sh(m), pm, packagesFor(o.cluster, m, pm));
      if (!missing.length) return [];
      if (pm !== 'apt')
        return [
          problem(
            `${m.name}, step packages`,
            'uses dnf; apply --offline installs Debian package sets only (RPM sets are not built)',
            'install the packages from a local dnf repository, then run `vigil apply` without --offline',
          ),
        ];
      return offlineProblem(src, m.name, releases.get(m.name)!, missing)?.problems ?? [];
    }),
  );
  if (problems.flat().length) throw new VigilError('APPLY', problems.flat());
}

async function packages(run: Run, shell: RemoteShell, m: Machine, pm: PackageManager, offline?: { src: OfflineSource; release: string }): Promise<void> {
  const wanted = packagesFor(run.o.cluster, m, pm);
  const missing = await missingPackages(shell, pm, wanted);
  if (!missing.length) return;
  if (offline) {
    if (pm !== 'apt')
      throw new VigilError('APPLY', [
        problem(
          `${m.name}, step packages`,
          'uses dnf; apply --offline installs Debian package sets only (RPM sets are not built)',
          'install the packages from a local dnf repository, then run `vigil apply` without --offline',
        ),
      ]);
    run.change(m.name, 'packages', `install ${missing.join(' ')} from ${offline.src.label} (offline)`);
    if (!run.o.dryRun) await installOffline(shell, m, offline.src, offline.release, missing, (l) => run.note(m.name, 'packages', l));
    return;
  }
  run.change(m.name, 'packages', `install ${missing.join(' ')}`);
  if (run.o.dryRun) return;
  let r = await shell.exec(installCommand(pm, missing), { timeoutMs: 30 * 60_000 });
  if (r.code !== 0 && pm === 'apt') {
    // A fresh machine's package lists may be missing or stale: refresh once and try again.
    await shell.exec(['apt-get', 'update', '-q'], { timeoutMs: 10 * 60_000 });
    r = await shell.exec(installCommand(pm, missing), { timeoutMs: 30 * 60_000 });
  }
  if (r.code !== 0)
    throw new VigilError('REMOTE_COMMAND', [
      problem(
        m.name,
        `installing ${missing.join(' ')} failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' ')}`,
        installFix(pm, m.name, missing),
      ),
    ]);
}

/**
 * PGDG's RPMs install PostgreSQL under /usr/pgsql-N, Debian's under /usr/lib/postgresql/N, which
 * patroni.yml names (postgresBinDir): on dnf machines apply links the one to the other, so the
 * same configuration runs on both families. (Untested here: the lab is Debian.)
 */
async function pgdgBinLink(run: Run, shell: RemoteShell, m: Machine): Promise<void> {
  const version = run.o.cluster.database.postgresVersion;
  const debianPath = postgresBinDir(version);
  const pgdgPath = `/usr/pgsql-${version}/bin`;
  const there = await shell.exec([
    'sh',
    '-c',
    'if [ -e "$1" ]; then echo has; elif [ -d "$2" ]; then echo link; else echo none; fi',
    'vigil-pgbin',
    debianPath,
    pgdgPath,
  ]);
  const state = there.stdout.trim();
  if (state === 'has') return;
  if (state === 'none' && !run.o.dryRun)
    throw new Error(`neither ${debianPath} nor ${pgdgPath} exists: PostgreSQL ${version} is not installed (database.postgresVersion)`);
  run.change(m.name, 'packages', `link ${debianPath} to ${pgdgPath} (PGDG's layout), where patroni.yml looks for PostgreSQL`);
  if (run.o.dryRun) return;
  const r = await shell.exec(['sh', '-c', 'mkdir -p -- "$(dirname -- "$1")" && ln -s -- "$2" "$1"', 'vigil-pgbin', debianPath, pgdgPath]);
  if (r.code !== 0) throw new Error(`cannot link ${debianPath} to ${pgdgPath}: ${r.stderr.trim()}`);
}

async function distroServices(run: Run, shell: RemoteShell, m: Machine): Promise<void> {
  const states = await unitStates(shell, [...DISTRO_SERVICES]);
  for (const [unit, s] of states) {
    if (!s.exists || (!s.active && !s.enabled)) continue;
    run.change(m.name, 'distro-services', `disable and stop ${unit} (Vigil runs its own unit for it)`);
    if (!run.o.dryRun) await systemctl(shell, ['disable', '--now', unit]);
  }
}

async function archCheck(shell: RemoteShell, artifact: Artifact): Promise<void> {
  const arch = (await shell.exec(['uname', '-m'])).stdout.trim();
  if (arch !== artifact.arch)
    throw new VigilError('APPLY', [
      problem(
        shell.machine,
        `the machine is ${arch}, Vigil's artifact (this machine's Node.js) is ${artifact.arch}`,
        `run \`vigil apply\` from an ${arch} machine`,
      ),
    ]);
}

async function directories(run: Run, shell: RemoteShell, m: Machine): Promise<void> {
  const dirs = desiredDirs(run.o.cluster, m);
  const states = await dirStates(
    shell,
    dirs.map((d) => d.path),
  );
  for (const d of dirs) {
    const s = states.get(d.path);
    const mode = d.mode.toString(8);
    if (s && s.mode === mode && s.owner === d.owner) continue;
    run.change(m.name, 'directories', s ? `set ${d.path} to ${d.owner} ${mode} (was ${s.owner} ${s.mode})` : `create ${d.path} (${d.owner} ${mode})`);
    if (run.o.dryRun) continue;
    const r = await shell.exec(['sh', '-c', 'mkdir -p -- "$1" && chown -- "$2" "$1" && chmod -- "$3" "$1"', 'vigil-dir', d.path, d.owner, mode]);
    if (r.code !== 0) throw new Error(`cannot create ${d.path}: ${r.stderr.trim()}`);
  }
}

/** Writes what differs (content, mode or owner) and notes which services must see it. */
async function files(run: Run, shell: RemoteShell, m: Machine, wanted: DesiredFile[], stepName: ApplyStep = 'files'): Promise<void> {
  const states = await fileStates(
    shell,
    wanted.map((f) => f.path),
  );
  const toWrite = wanted.filter((f) => {
    const s = states.get(f.path);
    return !s || s.sha256 !== f.sha256 || s.mode !== f.mode.toString(8) || s.owner !== f.owner;
  });
  if (!toWrite.length) return;
  if (!run.o.dryRun) {
    const parents = [...new Set(toWrite.map((f) => dirname(f.path)))];
    const r = await shell.exec(['mkdir', '-p', '--', ...parents]);
    if (r.code !== 0) throw new Error(`cannot create ${parents.join(', ')}: ${r.stderr.trim()}`);
  }
  const artifact = toWrite.filter((f) => f.artifact);
  if (artifact.length) {
    const bytes = artifact.reduce((n, f) => n + (typeof f.content === 'object' && 'size' in f.content ? f.content.size : 0), 0);
    const had = wanted.filter((f) => f.artifact).length;
    run.change(
      m.name,
      stepName,
      `install Vigil ${artifact[0]!.artifact} under ${VIGIL_INSTALL.dir} (${artifact.length} of ${had} files, ${(bytes / 2 ** 20).toFixed(1)} MiB)`,
    );
  }
  for (const f of toWrite) {
    const s = states.get(f.path);
    const why = !s ? 'new' : s.sha256 !== f.sha256 ? 'content differs' : `mode or owner ${s.mode} ${s.owner}`;
    if (!f.artifact) run.change(m.name, stepName, `write ${f.path} (${why})`);
    if (f.path.startsWith(`${PATHS.systemdDir}/`)) run.unitFilesChanged.add(m.name);
    run.ask(m.name, f.affects);
    if (run.o.dryRun) continue;
    const content = typeof f.content === 'object' && 'source' in f.content ? await readFile(f.content.source) : f.content;
    await shell.writeFile(f.path, content, { mode: f.mode, owner: f.owner });
  }
}

/** Keeps a machine's certificate while it is the CA's, names the machine, matches its key and has a month left; else issues a new one. */
async function certificates(run: Run, shell: RemoteShell, m: Machine, ca: ClusterCa): Promise<void> {
  const dir = PATHS.pkiDir;
  const cert = `${dir}/${m.name}.pem`;
  const key = `${dir}/${m.name}.key`;
  const proxy = m.roles.includes('proxy');
  const reason = await certificateProblem(shell, m, ca, { cert, key, proxy });
  if (!reason) return;
  run.change(m.name, 'certificates', `issue ${cert} and its key (${reason})`);
  run.ask(m.name, [
    ...daemonUnits(run.o.cluster, m).map((unit) => ({ unit, action: 'restart' as const })),
    ...(proxy ? [{ unit: UNITS.haproxy, action: 'reload' as const }] : []),
  ]);
  if (run.o.dryRun) return;
  const issued = await machinePkiFiles(ca, m, 'both');
  await shell.exec(['mkdir', '-p', dir]);
  // Key first, certificate last: a reader never pairs the new certificate with the old key.
  await shell.writeFile(key, issued[`${m.name}.key`]!, { mode: 0o600, owner: 'root:root' });
  if (proxy)
    await shell.writeFile(PATHS.haproxyCheckBundle, pemBundle(issued[`${m.name}.pem`]!, issued[`${m.name}.key`]!), { mode: 0o600, owner: 'root:root' });
  await shell.writeFile(`${dir}/${CA_CERT_FILE}`, issued[CA_CERT_FILE]!, { mode: 0o644, owner: 'root:root' });
  await shell.writeFile(cert, issued[`${m.name}.pem`]!, { mode: 0o644, owner: 'root:root' });
}

/**
 * A server certificate the cluster CA issues for one machine: the reference application's HTTPS
 * port (`application.tlsEndpoints`) and nginx's HTTPS for the proxy (`application.backendTls`).
 * Kept while it is the CA's, names the machine, matches its key and has a month left.
 */
interface ServerCert {
  cert: string;
  key: string;
  /** For the change line: "the reference application's HTTPS port". */
  what: string;
  unit: string;
  /** What the unit needs when the certificate changes: a restart if it reads the files only at start. */
  action?: 'restart' | 'try-restart' | 'try-reload';
  /** DNS names beside the machine's address: HAProxy's `verifyhost` checks a DNS name. */
  dnsNames: string[];
  /** The key's owner (the user the component runs as); root:root by default. */
  owner?: string;
  /** Server by default; etcd's members also connect to each other with theirs, Patroni only connects. */
  usage?: CertUsage;
  /** Without the machine's address and 127.0.0.1 in the SAN (a client-only certificate). */
  clientOnly?: boolean;
}

const refappServerCert = (): ServerCert => ({
  cert: PATHS.refappTlsCert,
  key: PATHS.refappTlsKey,
  what: "the reference application's HTTPS port",
  unit: UNITS.refapp,
  dnsNames: [],
});

const nginxServerCert = (m: Machine): ServerCert => ({
  cert: PATHS.nginxTlsCert,
  key: PATHS.nginxTlsKey,
  what: "nginx's HTTPS for the proxy (application.backendTls)",
  unit: UNITS.nginx,
  dnsNames: [m.name],
});

/** etcd members: the member's certificate for its client and peer ports (src/render/etcd.ts), read by the etcd user. */
const etcdServerCert = (): ServerCert => ({
  cert: PATHS.etcdTlsCert,
  key: PATHS.etcdTlsKey,
  what: "etcd's client and peer ports",
  unit: UNITS.etcd,
  action: 'restart',
  dnsNames: [],
  owner: 'etcd:etcd',
  usage: 'both',
});

/** db machines: Patroni's client certificate for etcd (src/render/patroni.ts), read by the postgres user only. */
const patroniEtcdCert = (): ServerCert => ({
  cert: PATHS.patroniEtcdCert,
  key: PATHS.patroniEtcdKey,
  what: "Patroni's client identity for etcd",
  unit: UNITS.patroni,
  // Not a restart (that would restart PostgreSQL on every db machine at once), a reload. Not yet
  // verified: that Patroni's etcd client uses a renewed certificate without a restart (its open
  // connections keep the old one; only a new TLS connection reads the files).
  action: 'try-reload',
  dnsNames: [],
  owner: 'postgres:postgres',
  usage: 'client',
  clientOnly: true,
});

/**
 * db machines: Patroni's REST API certificate (src/render/patroni.ts), read by the postgres user
 * only. Server usage for the API; client usage for Patroni's calls to the other members, which
 * present it. The machine's name as a DNS name too: HAProxy's :5000 check verifies it (`verifyhost`).
 */
const patroniRestCert = (m: Machine): ServerCert => ({
  cert: PATHS.patroniRestCert,
  key: PATHS.patroniRestKey,
  what: "Patroni's REST API over TLS",
  unit: UNITS.patroni,
  // A reload: Patroni reads the REST API's certificate again on SIGHUP (a restart would restart
  // PostgreSQL). Its own calls to other members take the new one on their next connection.
  action: 'try-reload',
  dnsNames: [m.name],
  owner: 'postgres:postgres',
  usage: 'both',
});

async function serverCertificate(run: Run, shell: RemoteShell, m: Machine, ca: ClusterCa, c: ServerCert): Promise<void> {
  const { cert, key } = c;
  const owner = c.owner ?? 'root:root';
  const states = await fileStates(shell, [cert, key]);
  const [certState, keyState] = [...states.values()];
  let reason: string | undefined;
  if (!certState || !keyState) reason = 'none yet';
  else if (keyState.mode !== '600' || keyState.owner !== owner || certState.owner !== owner)
    reason = `the key is ${keyState.owner} ${keyState.mode}, the certificate ${certState.owner}`;
  else {
    let x: X509Certificate | undefined;
    try {
      x = new X509Certificate((await shell.readFile(cert))?.toString('utf8') ?? '');
    } catch {
      reason = 'the certificate cannot be read';
    }
    if (x) {
      const info = certificateInfo(x.toString());
      if (!issuedByCa(x, ca)) reason = "not issued by this cluster's CA";
      else if (
        info.commonName !== m.name ||
        (!c.clientOnly && !['127.0.0.1', m.address].every((a) => info.ipAddresses.includes(a))) ||
        c.dnsNames.some((d) => !info.dnsNames.includes(d))
      )
        reason = `it names ${[info.commonName, ...info.dnsNames, ...info.ipAddresses].join(',')}`;
      else if (info.notAfter.getTime() - Date.now() < RENEW_BEFORE_MS) reason = `it expires on ${info.notAfter.toISOString().slice(0, 10)}`;
      else if (!(await remoteKeyMatches(shell, key, x))) reason = 'the key does not match the certificate';
    }
  }
  if (!reason) return;
  run.change(m.name, 'certificates', `issue ${cert} and its key for ${c.what} (${reason})`);
  run.ask(m.name, [{ unit: c.unit, action: c.action ?? 'try-restart' }]);
  if (run.o.dryRun) return;
  const issued = await issueCertificate(ca, {
    commonName: m.name,
    ipAddresses: c.clientOnly ? [] : [m.address, '127.0.0.1'],
    dnsNames: c.dnsNames,
    usage: c.usage ?? 'server',
  });
  const dir = await shell.exec(['mkdir', '-p', '--', dirname(cert)]);
  if (dir.code !== 0) throw new Error(`cannot create ${dirname(cert)}: ${dir.stderr.trim()}`);
  // Key first, certificate last: a reader never pairs the new certificate with the old key.
  await shell.writeFile(key, issued.keyPem, { mode: 0o600, owner });
  await shell.writeFile(cert, issued.certPem, { mode: 0o644, owner });
}

async function certificateProblem(
  shell: RemoteShell,
  m: Machine,
  ca: ClusterCa,
  p: { cert: string; key: string; proxy: boolean },
): Promise<string | undefined> {
  const states = await fileStates(shell, [`${PATHS.pkiDir}/${CA_CERT_FILE}`, p.cert, p.key, ...(p.proxy ? [PATHS.haproxyCheckBundle] : [])]);
  const [caState, certState, keyState, bundleState] = [...states.values()];
  if (!certState || !keyState) return 'none yet';
  if (caState?.sha256 !== sha256(ca.certPem)) return 'the CA certificate differs';
  if (keyState.mode !== '600' || keyState.owner !== 'root:root') return `the key is ${keyState.owner} ${keyState.mode}`;
  const certPem = (await shell.readFile(p.cert))?.toString('utf8') ?? '';
  let x: X509Certificate;
  try {
    x = new X509Certificate(certPem);
  } catch {
    return 'the certificate cannot be read';
  }
  if (!issuedByCa(x, ca)) return "not issued by this cluster's CA";
  const info = certificateInfo(certPem);
  if (info.commonName !== m.name || !info.ipAddresses.includes(m.address)) return `it names ${info.commonName} ${info.ipAddresses.join(',')}`;
  if (info.notAfter.getTime() - Date.now() < RENEW_BEFORE_MS) return `it expires on ${info.notAfter.toISOString().slice(0, 10)}`;
  if (!(await remoteKeyMatches(shell, p.key, x))) return 'the key does not match the certificate';
  if (p.proxy) {
    const both = await shell.exec(['sh', '-c', 'cat -- "$1" "$2" | sha256sum', 'vigil-pem', p.cert, p.key]);
    if (!bundleState || bundleState.sha256 !== both.stdout.split(' ')[0] || bundleState.mode !== '600') return "HAProxy's check bundle is missing or stale";
  }
  return undefined;
}

/** The bundle for :443 from the cluster CA, when the cluster file gives no certificate of its own. */
async function siteBundle(run: Run, shell: RemoteShell, m: Machine, ca: ClusterCa): Promise<void> {
  const { cluster } = run.o;
  const path = cluster.proxy.tlsBundle!;
  const state = await siteBundleState(shell, cluster, ca);
  if (state.kind === 'current') return;
  if (state.kind === 'foreign') {
    run.note(
      m.name,
      'tls',
      `keeping ${path} (${state.subject}, valid until ${state.notAfter.toISOString().slice(0, 10)}): not issued by the cluster CA, so it was put there by hand; give its files as proxy.tlsCertificate and proxy.tlsKey to have apply manage it`,
    );
    return;
  }
  const names = siteNames(cluster);
  run.change(m.name, 'tls', `issue ${path} from the cluster CA for ${[...names.dnsNames, ...names.ipAddresses].join(', ')} (${state.reason})`);
  run.ask(m.name, [{ unit: UNITS.haproxy, action: 'reload' }]);
  if (run.o.dryRun) return;
  const dir = await shell.exec(['mkdir', '-p', '--', dirname(path)]);
  if (dir.code !== 0) throw new Error(`cannot create ${dirname(path)}: ${dir.stderr.trim()}`);
  await shell.writeFile(path, await issueSiteBundle(cluster, ca), { mode: 0o600, owner: 'root:root' });
}

/** The application's database password, identical in every config file that holds it. */
async function passwords(run: Run, shell: RemoteShell, m: Machine, rendered: Set<string>): Promise<void> {
  for (const file of run.o.cluster.application.passwordFiles) {
    // A file Vigil renders itself (the reference application's) already carries the password.
    if (rendered.has(file.path)) continue;
    const changes = await setPasswordFile(shell, file, run.o.secrets.appDbPassword, { dryRun: run.o.dryRun, source: run.o.cluster.source });
    for (const what of changes) run.change(m.name, 'passwords', what);
  }
}

/** Each app machine's own sync key, made on the machine: the private key never leaves it. */
async function syncKey(run: Run, shell: RemoteShell, m: Machine): Promise<void> {
  let pub = await shell.readFile(`${SYNC_PATHS.key}.pub`);
  const hasKey = (await fileStates(shell, [SYNC_PATHS.key])).get(SYNC_PATHS.key);
  if (!pub || !hasKey) {
    run.change(m.name, 'sync-keys', `create the file-sync key ${SYNC_PATHS.key}`);
    if (run.o.dryRun) return;
    await shell.exec(['rm', '-f', SYNC_PATHS.key, `${SYNC_PATHS.key}.pub`]);
    const r = await shell.exec(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `vigil-sync@${m.name}`, '-f', SYNC_PATHS.key]);
    if (r.code !== 0) throw new Error(`ssh-keygen failed: ${r.stderr.trim()}`);
    pub = await shell.readFile(`${SYNC_PATHS.key}.pub`);
  }
  run.syncPubs.set(m.name, pub!.toString('utf8').trim());
}

/** Who may push to whom: every other app machine's key, restricted to the receiver; their host keys pinned; sshd reading the file. */
async function syncTrust(run: Run, sh: (m: Machine) => RemoteShell): Promise<void> {
  const apps = withRole(run.o.cluster, 'app');
  if (apps.length < 2) return;
  const pubs = run.syncPubs;
  const pinned = parseKnownHosts(await readFile(run.o.knownHostsFile, 'utf8'));
  const port = run.o.cluster.fileSync.sshPort;
  await eachMachine(apps, async (m) =>
    step(m.name, 'sync-trust', async () => {
      const shell = sh(m);
      const others = apps.filter((x) => x.name !== m.name);
      const wanted: DesiredFile[] = [];
      if (others.every((x) => pubs.has(x.name))) {
        const authorized = others.map((x) =>
          authorizedKeyLine({
            peer: x.name,
            peerAddress: x.address,
            publicKey: pubs.get(x.name)!,
            receiverCommand: `${VIGIL_INSTALL.node} ${VIGIL_INSTALL.receiver}`,
          }),
        );
        const known = others.map((x) => {
          const entry = pinned.find((e) => e.hosts === hostPattern(x.address, x.sshPort));
          if (!entry)
            throw new VigilError('APPLY', [
              problem(
                `${m.name}, step sync-trust`,
                `no pinned host key for ${x.name} (${hostPattern(x.address, x.sshPort)}) in ${run.o.knownHostsFile}`,
                `pin it with \`vigil init --pin-only\``,
              ),
            ]);
          return `${hostPattern(x.address, port)} ${entry.key.type} ${entry.key.blob.toString('base64')}`;
        });
        const file = (path: string, content: string, mode: number): DesiredFile => ({
          path,
          content,
          mode,
          owner: 'root:root',
          sha256: sha256(content),
          secret: false,
          affects: [],
        });
        wanted.push(file(SYNC_PATHS.authorizedKeys, `${authorized.join('\n')}\n`, 0o600), file(SYNC_PATHS.knownHosts, `${known.join('\n')}\n`, 0o644));
      } else if (run.o.dryRun) run.change(m.name, 'sync-trust', `allow ${others.map((x) => x.name).join(', ')} to push to it (keys made by this apply)`);
      const dropIn: DesiredFile = {
        path: SSHD_DROP_IN,
        content: sshdDropIn(),
        mode: 0o644,
        owner: 'root:root',
        sha256: sha256(sshdDropIn()),
        secret: false,
        affects: [],
      };
      const before = run.changes.length;
      await files(run, shell, m, [...wanted, dropIn], 'sync-trust');
      const sshdChanged = run.changes.slice(before).some((c) => c.what.includes(SSHD_DROP_IN));
      if (run.o.dryRun || !sshdChanged) return;
      const test = await shell.exec(['sshd', '-t']);
      if (test.code !== 0) throw new Error(`sshd -t refuses the configuration with ${SSHD_DROP_IN}: ${test.stderr.trim()}`);
      const effective = await shell.exec(['sshd', '-T', '-C', `user=root,host=${others[0]!.name},addr=${others[0]!.address}`]);
      const line = /^authorizedkeysfile (.*)$/m.exec(effective.stdout)?.[1] ?? '';
      if (!line.split(' ').includes(SYNC_PATHS.authorizedKeys))
        throw new VigilError('APPLY', [
          problem(
            `${m.name}, step sync-trust`,
            `sshd does not read ${SYNC_PATHS.authorizedKeys} (its AuthorizedKeysFile is "${line}"): /etc/ssh/sshd_config sets it before including ${SSHD_DROP_IN}, or does not include sshd_config.d`,
            `add ${SYNC_PATHS.authorizedKeys} to AuthorizedKeysFile in /etc/ssh/sshd_config on ${m.name}, then run \`vigil apply\` again`,
          ),
        ]);
      const units = await unitStates(shell, ['ssh.service', 'sshd.service']);
      const unit = [...units].find(([, s]) => s.active)?.[0];
      if (unit) await systemctl(shell, ['reload', unit]);
      else run.note(m.name, 'sync-trust', 'warning: neither ssh.service nor sshd.service runs; reload sshd by hand so it reads the new AuthorizedKeysFile');
    }),
  );
}
