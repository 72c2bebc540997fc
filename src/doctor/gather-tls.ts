/**
 * The application's own HTTPS endpoints (`application.tlsEndpoints`) as one app machine has
 * them: the settings file, the certificate and key paths it names, whether they exist and the
 * service's user may read them (tried with that user's own permissions, never assumed from
 * modes), the certificate, and the public half of the key (derived on the machine: the private
 * key never leaves it). Judged in checks/app-tls.ts.
 */
import type { Cluster } from '../config/schema.ts';
import type { RemoteShell } from '../remote/types.ts';
import {
  lookupKey,
  parseSettings,
  parseUnitCredentials,
  pathProblem,
  readableCommand,
  type ServiceCredentials,
  type TlsEndpointFact,
  type TlsPathFact,
} from '../facts/app-settings.ts';
import { errorText, failed, firstLine, got, runOn, type Probe } from '../facts/probe.ts';
import { withRole } from '../config/schema.ts';
import { appPort, backendTls, nginxCertPaths } from '../layout/backend.ts';
import type { BackendTlsFacts, BackendTlsServerFact } from './types.ts';

async function readable(shell: RemoteShell, creds: Probe<ServiceCredentials>, path: string, timeoutMs: number): Promise<Probe<boolean>> {
  if (!creds.ok) return creds;
  // 0: it may; 1: it may not (or the path is not there); anything else: the probe itself failed.
  const r = await runOn(shell, readableCommand(creds.value, path), timeoutMs, [0, 1]);
  return r.ok ? got(r.value.code === 0) : r;
}

async function onePath(
  shell: RemoteShell,
  settings: Parameters<typeof lookupKey>[0],
  what: TlsPathFact['what'],
  key: string,
  creds: Probe<ServiceCredentials>,
  timeoutMs: number,
): Promise<TlsPathFact> {
  const lookup = lookupKey(settings, key);
  const fact: TlsPathFact = { what, key, lookup };
  if (lookup.status !== 'found' || pathProblem(lookup.value) !== null) return fact;
  const path = lookup.value;
  const exists = await runOn(shell, ['test', '-e', path], timeoutMs, [0, 1]);
  if (!exists.ok) return { ...fact, readable: exists };
  fact.exists = exists.value.code === 0;
  if (!fact.exists) return fact;
  fact.readable = await readable(shell, creds, path, timeoutMs);
  if (what === 'certificate') {
    try {
      fact.pem = got((await shell.readFile(path))?.toString('utf8') ?? null);
    } catch (err) {
      fact.pem = failed(errorText(err));
    }
  } else {
    const pub = await runOn(shell, ['openssl', 'pkey', '-pubout', '-in', path], timeoutMs);
    fact.pem = pub.ok ? got(pub.value.stdout) : pub;
  }
  return fact;
}

export async function gatherTlsEndpoints(shell: RemoteShell, cluster: Cluster, timeoutMs: number): Promise<TlsEndpointFact[]> {
  return Promise.all(
    cluster.application.tlsEndpoints.map(async (e): Promise<TlsEndpointFact> => {
      const unit = cluster.application.services.find((s) => s.name === e.service)?.unit ?? e.service;
      const base = { service: e.service, unit, port: e.port, file: e.settingsFile, format: e.format, paths: [] };
      const show = await runOn(shell, ['systemctl', 'show', '-p', 'User', '-p', 'Group', '-p', 'CapabilityBoundingSet', unit], timeoutMs);
      const credentials: Probe<ServiceCredentials> = show.ok ? got(parseUnitCredentials(show.value.stdout)) : show;
      let content: Buffer | null;
      try {
        content = await shell.readFile(e.settingsFile);
      } catch (err) {
        return { ...base, credentials, settings: { status: 'unreadable', detail: errorText(err) } };
      }
      if (content === null) return { ...base, credentials, settings: { status: 'missing-file' } };
      const settingsReadable = await readable(shell, credentials, e.settingsFile, timeoutMs);
      const parsed = parseSettings(content.toString('utf8'), e.format, e.settingsFile);
      if (!parsed.ok)
        return {
          ...base,
          credentials,
          settingsReadable,
          settings: { status: 'unparseable', detail: parsed.problem, ...(parsed.line ? { line: parsed.line } : {}) },
        };
      const paths = await Promise.all([
        onePath(shell, parsed.settings, 'certificate', e.certificatePathKey, credentials, timeoutMs),
        onePath(shell, parsed.settings, 'key', e.keyPathKey, credentials, timeoutMs),
      ]);
      return { ...base, credentials, settingsReadable, settings: { status: 'ok' }, paths };
    }),
  );
}

/**
 * From a proxy machine, each app machine's HTTPS for the proxy (`application.backendTls`): the
 * certificates its nginx presents (openssl s_client, as HAProxy connects: from this machine, to
 * the address and port of its server line, with the machine's name as SNI) and the CA file
 * HAProxy verifies them with. Judged in checks/backend-tls.ts.
 */
export async function gatherBackendTls(shell: RemoteShell, cluster: Cluster, timeoutMs: number): Promise<BackendTlsFacts | undefined> {
  const tls = backendTls(cluster);
  if (!tls) return undefined;
  const caPem = await runOn(shell, ['cat', '--', tls.caFile], timeoutMs, [0, 1]).then((r): Probe<string | null> =>
    r.ok ? got(r.value.code === 0 ? r.value.stdout : null) : r,
  );
  const servers = await Promise.all(
    withRole(cluster, 'app').map(async (m): Promise<BackendTlsServerFact> => {
      const target = `${m.address}:${appPort(cluster)}`;
      const r = await runOn(
        shell,
        ['sh', '-c', 'openssl s_client -connect "$1" -servername "$2" -showcerts </dev/null 2>&1', 'vigil-doctor', target, m.name],
        timeoutMs,
        [0, 1],
      );
      if (!r.ok) return { machine: m.name, target, chain: r };
      const pems = [...r.value.stdout.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((x) => x[0]);
      if (pems.length > 0) return { machine: m.name, target, chain: got(pems) };
      const why = r.value.stdout.split('\n').find((l) => /errno|refused|error|unable/i.test(l)) ?? firstLine(r.value.stdout);
      return { machine: m.name, target, chain: failed(`no TLS handshake with ${target}: ${why.trim() || 'no certificate presented'}`) };
    }),
  );
  return { caFile: tls.caFile, caPem, servers };
}

/** On an app machine with `application.backendTls`: the certificate file nginx serves (public; the key is never read). */
export async function gatherNginxCert(shell: RemoteShell, cluster: Cluster): Promise<Probe<{ path: string; pem: string | null }> | undefined> {
  const paths = nginxCertPaths(cluster);
  if (!paths) return undefined;
  try {
    return got({ path: paths.cert, pem: (await shell.readFile(paths.cert))?.toString('utf8') ?? null });
  } catch (err) {
    return failed(errorText(err));
  }
}
