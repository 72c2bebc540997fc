/**
 * Test fixtures: the facts a healthy cluster yields, built from the same tables doctor expects
 * (portRequirements, pathRules) and real certificates from the cluster CA, so a test changes one
 * fact and sees exactly the finding it causes.
 */
import { createPublicKey } from 'node:crypto';
import { agentMachines, withRole, type Cluster, type Secrets } from '../config/schema.ts';
import { createClusterCa, issueCertificate, type CertKeyPair } from '../pki/ca.ts';
import { renderMachine } from '../render/index.ts';
import type { RenderedFile } from '../render/file.ts';
import type { EvalContext } from '../doctor/checks/context.ts';
import { portRequirements, pathRules } from '../doctor/expect.ts';
import { systemdFixes, type Fixes } from '../doctor/fixes.ts';
import { got, type Facts, type Identity, type Listener, type MachineFacts, type PathStat } from '../doctor/types.ts';

export interface FixturePki {
  ca: CertKeyPair;
  certs: Map<string, CertKeyPair>;
}

export async function fixturePki(cluster: Cluster, days = 730): Promise<FixturePki> {
  const ca = await createClusterCa({ clusterName: cluster.cluster.name });
  const certs = new Map<string, CertKeyPair>();
  for (const m of cluster.machines) certs.set(m.name, await issueCertificate(ca, { commonName: m.name, ipAddresses: [m.address], usage: 'both', days }));
  return { ca, certs };
}

const publicOf = (keyPem: string) => createPublicKey(keyPem).export({ type: 'spki', format: 'pem' }).toString();

function identity(label: Identity['label'], certPath: string, keyPath: string, pair: CertKeyPair): Identity {
  return { label, certPath, keyPath, certPem: got(pair.certPem), keyPublicPem: got(publicOf(pair.keyPem)) };
}

const PROCESS: Record<string, string> = { etcd: 'etcd', patroni: 'postgres', haproxy: 'haproxy', agent: 'node', nginx: 'nginx', sshd: 'sshd' };

export function healthyFacts(cluster: Cluster, rendered: Map<string, RenderedFile[]>, pki: FixturePki, active = 'app1'): Facts {
  const reqs = portRequirements(cluster);
  const primary = withRole(cluster, 'db')[0]?.name;
  const machines: MachineFacts[] = cluster.machines.map((m) => {
    const listeners: Listener[] = reqs
      .filter((r) => r.to === m.name && (!r.activeOnly || m.name === active))
      .map((r, i) => ({ address: '0.0.0.0', port: r.port, processes: [{ name: PROCESS[r.component]!, pid: 1000 + i }] }));
    const paths: PathStat[] = pathRules(cluster, m, rendered.get(m.name) ?? []).map((rule) => ({
      path: rule.path,
      user: rule.user,
      group: rule.group,
      type: rule.type,
      mode: (rule.type === 'directory' ? 0o755 : 0o644) & ~rule.forbid,
    }));
    const pair = pki.certs.get(m.name)!;
    const identities = [identity('machine', `/etc/vigil/pki/${m.name}.pem`, `/etc/vigil/pki/${m.name}.key`, pair)];
    if (m.roles.includes('proxy')) identities.push(identity('haproxy-check', '/etc/vigil/pki/haproxy-check.pem', '/etc/vigil/pki/haproxy-check.pem', pair));
    const f: MachineFacts = {
      name: m.name,
      address: m.address,
      roles: m.roles,
      reachable: got(true),
      clock: got({ offsetMs: 3, uncertaintyMs: 4 }),
      listeners: got(listeners),
      paths: got(paths),
      disk: got([{ path: '/var/lib/vigil', mount: '/', totalBytes: 100 * 2 ** 30, freeBytes: 60 * 2 ** 30 }]),
      ports: reqs
        .filter((r) => r.from.includes(m.name))
        .map((r) => ({ from: m.name, to: r.to, port: r.port, outcome: r.activeOnly && r.to !== active ? 'refused' : 'open' })),
      pki: got({ caPem: pki.ca.certPem, identities }),
    };
    if (m.roles.includes('proxy')) f.haproxyConfig = got({ valid: true, output: '' });
    if (m.roles.includes('app')) {
      f.passwords = cluster.application.passwordFiles.map((p) => ({ path: p.path, key: p.key, status: 'same' }));
      // The application's HTTPS endpoints, served with the machine's certificate here.
      f.tlsEndpoints = cluster.application.tlsEndpoints.map((e) => ({
        service: e.service,
        unit: cluster.application.services.find((s) => s.name === e.service)?.unit ?? e.service,
        port: e.port,
        file: e.settingsFile,
        format: e.format,
        credentials: got({ user: 'root', group: '', bypassesPermissions: false }),
        settings: { status: 'ok' as const },
        settingsReadable: got(true),
        paths: [
          { what: 'certificate' as const, key: e.certificatePathKey, path: `/etc/app/tls/${m.name}.pem`, pem: pair.certPem },
          { what: 'key' as const, key: e.keyPathKey, path: `/etc/app/tls/${m.name}.key`, pem: publicOf(pair.keyPem) },
        ].map((p) => ({
          what: p.what,
          key: p.key,
          lookup: { status: 'found' as const, value: p.path, line: 3 },
          exists: true,
          readable: got(true),
          pem: got(p.pem),
        })),
      }));
      if (m.name === active)
        listeners.push(
          ...cluster.application.tlsEndpoints.map((e, i) => ({ address: '127.0.0.1', port: e.port, processes: [{ name: 'node', pid: 2000 + i }] })),
        );
      f.appVersion = got([
        { service: 'nginx', program: '/usr/sbin/nginx', sha256: 'a'.repeat(64) },
        { service: 'app', program: '/opt/vigil/vigil.mjs', sha256: 'b'.repeat(64) },
      ]);
    }
    return f;
  });
  const etcd = withRole(cluster, 'etcd');
  const now = new Date().toISOString();
  return {
    machines,
    cluster: {
      etcd: etcd.map((m, i) => ({
        machine: m.name,
        endpoint: `https://${m.address}:2379`,
        health: got({ healthy: true }),
        status: got({ leader: '42', memberId: String(i + 1), dbSizeBytes: 2 ** 20 }),
      })),
      etcdMembers: got(etcd.map((m) => m.name)),
      state: got({
        active: { node: active, epoch: 3, since: now, reason: 'bootstrap' },
        observerLeader: { id: 'o1', host: 'observer', since: now },
        maintenance: null,
      }),
      patroni: got({
        from: primary ?? '',
        members: withRole(cluster, 'db').map((m) => ({
          name: m.name,
          role: m.name === primary ? 'leader' : 'sync_standby',
          state: m.name === primary ? 'running' : 'streaming',
          lagBytes: m.name === primary ? null : 0,
        })),
        paused: false,
        synchronousMode: cluster.database.replication === 'synchronous',
        failsafeMode: true,
      }),
      patroniAnswered: Object.fromEntries(withRole(cluster, 'db').map((m) => [m.name, true])),
      haproxy: withRole(cluster, 'proxy').map((p) => ({
        machine: p.name,
        servers: got([
          ...withRole(cluster, 'app').map((m) => ({
            backend: 'app',
            server: m.name,
            admin: m.name === active ? ('ready' as const) : ('maint' as const),
            op: m.name === active ? ('up' as const) : ('down' as const),
            checks: 'enabled' as const,
          })),
          ...withRole(cluster, 'db').map((m) => ({
            backend: 'postgres',
            server: m.name,
            admin: 'ready' as const,
            op: m.name === primary ? ('up' as const) : ('down' as const),
            checks: 'enabled' as const,
          })),
        ]),
      })),
      adminPki: got({ caPem: pki.ca.certPem }),
      agents: agentMachines(cluster).map((m) => {
        const isApp = m.roles.includes('app');
        const isActive = m.name === active;
        return {
          machine: m.name,
          status: {
            node: m.name,
            active: isActive,
            epoch: 3,
            confirmedAgoMs: 100,
            appHealthy: isActive,
            ready: true,
            services: isApp ? cluster.application.services.map((s) => ({ name: s.name, running: isActive })) : [],
            disk: [],
            ...(isApp
              ? {
                  sync: {
                    role: isActive ? ('pushing' as const) : ('receiving' as const),
                    dirs: cluster.application.syncDirs,
                    watch: isActive ? { dirs: 1, degraded: null } : null,
                    peers: isActive
                      ? withRole(cluster, 'app')
                          .filter((o) => o.name !== m.name)
                          .map((o) => ({ node: o.name, backlog: 0, lagMs: 0, reconciling: false, lastSyncAt: now, lastReconcileAt: now, error: null }))
                      : [],
                    recentLagMs: null,
                    quarantine: { path: '/var/lib/vigil/sync/quarantine', files: 0, bytes: 0, sessions: [] },
                  },
                }
              : {}),
          },
        };
      }),
      adminPorts: reqs.filter((r) => r.from.includes(null)).map((r) => ({ from: null, to: r.to, port: r.port, outcome: 'open' as const })),
    },
  };
}

/** An evaluation context; the fixes are a real cluster's unless given (the lab's wording is src/lab/fixes.ts's, tested there). */
export function fixtureContext(cluster: Cluster, secrets: Secrets, facts: Facts, fixes: Fixes = systemdFixes(cluster)): EvalContext {
  const rendered = new Map(cluster.machines.map((m) => [m.name, renderMachine(cluster, secrets, m.name)]));
  return { cluster, facts, platform: fixes.platform, fixes, rendered, now: new Date() };
}

export function renderedOf(cluster: Cluster, secrets: Secrets): Map<string, RenderedFile[]> {
  return new Map(cluster.machines.map((m) => [m.name, renderMachine(cluster, secrets, m.name)]));
}
