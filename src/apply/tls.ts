/**
 * HAProxy's certificate bundle for :443 on the proxy machines (`proxy.tlsBundle`): the seed's
 * `cat example.crt example.key >> example.pem; chmod 600; chown root:root`, done by apply.
 *
 * - Your own certificate (`proxy.tlsCertificate` and `proxy.tlsKey`, files on the admin's
 *   machine): read and checked before any machine is touched (the key belongs to the
 *   certificate, has no passphrase, is readable by its owner only; the certificate is valid),
 *   then kept on every proxy machine as one file like any other file apply writes.
 * - Otherwise a certificate issued by the cluster CA for the proxy machines' addresses and
 *   `proxy.tlsDnsNames`: kept while it is the CA's, names all of them, has a month left and
 *   matches its key; issued anew otherwise.
 *
 * A bundle that someone put on a machine by hand and that the cluster CA did not issue is never
 * replaced: apply keeps it while it is usable, and stops with the fix when it is not.
 */
import { X509Certificate, createPublicKey } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { besideClusterFile } from '../config/load.ts';
import { withRole, type Cluster } from '../config/schema.ts';
import { certificateInfo, issueCertificate, pemBundle, type ClusterCa } from '../pki/ca.ts';
import type { RemoteShell } from '../remote/types.ts';
import { checkTlsBundleText } from '../render/tls.ts';
import { VigilError, problem } from '../util/errors.ts';
import { fileStates } from './remote.ts';
import { sha256, type DesiredFile } from './desired.ts';
import { PATHS } from '../layout/paths.ts';

/** A certificate is reissued when it has less than this left. */
export const RENEW_BEFORE_MS = 30 * 86_400_000;

/**
 * Your certificate and key as one bundle (certificate and chain, then the key), checked; undefined
 * when the cluster file gives none. Throws TLS_BUNDLE naming the file and the fix; never quotes the key.
 */
export async function ownBundle(cluster: Cluster, now: Date = new Date()): Promise<{ text: string; notAfter: Date } | undefined> {
  const { tlsCertificate, tlsKey } = cluster.proxy;
  if (!cluster.proxy.tlsBundle || tlsCertificate === undefined || tlsKey === undefined) return undefined;
  const certPath = besideClusterFile(cluster, tlsCertificate);
  const keyPath = besideClusterFile(cluster, tlsKey);
  const read = async (path: string, what: string, field: string): Promise<string> => {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      throw new VigilError(
        'TLS_BUNDLE',
        [
          problem(
            path,
            missing ? `${what} does not exist` : `${what} cannot be read`,
            missing ? `put it there, or correct proxy.${field} in ${cluster.source}` : `check the permissions of ${path}`,
          ),
        ],
        { cause: err },
      );
    }
  };
  const certText = await read(certPath, 'the certificate file (proxy.tlsCertificate)', 'tlsCertificate');
  const mode = (await stat(keyPath).catch(() => undefined))?.mode;
  // Checked before reading: a key others can read must be treated as leaked.
  if (mode !== undefined && (mode & 0o077) !== 0)
    throw new VigilError('TLS_BUNDLE', [
      problem(
        keyPath,
        `the private key file has mode ${(mode & 0o777).toString(8).padStart(4, '0')}: group or others can read it`,
        `chmod 600 ${keyPath} (and consider the key compromised if others had access)`,
      ),
    ]);
  const keyText = await read(keyPath, 'the private key file (proxy.tlsKey)', 'tlsKey');
  const text = pemBundle(certText, keyText);
  checkTlsBundleText(text, `${certPath} with ${keyPath}`, now);
  return { text, notAfter: certificateInfo(text).notAfter };
}

/** The names the cluster CA's certificate for :443 carries. */
export function siteNames(cluster: Cluster): { commonName: string; ipAddresses: string[]; dnsNames: string[] } {
  const dnsNames = cluster.proxy.tlsDnsNames;
  return { commonName: dnsNames[0] ?? cluster.cluster.name, ipAddresses: withRole(cluster, 'proxy').map((m) => m.address), dnsNames };
}

/** A new bundle for :443 from the cluster CA. */
export async function issueSiteBundle(cluster: Cluster, ca: ClusterCa): Promise<string> {
  const issued = await issueCertificate(ca, { ...siteNames(cluster), usage: 'server' });
  return pemBundle(issued.certPem, issued.keyPem);
}

export const issuedByCa = (x: X509Certificate, ca: ClusterCa): boolean => {
  const caCert = new X509Certificate(ca.certPem);
  return x.checkIssued(caCert) && x.verify(caCert.publicKey);
};

/** Whether the private key in `path` on the machine belongs to `x`: its public half is computed there, so the key never travels. */
export async function remoteKeyMatches(shell: RemoteShell, path: string, x: X509Certificate): Promise<boolean> {
  const pub = await shell.exec(['openssl', 'pkey', '-in', path, '-pubout']);
  if (pub.code !== 0) return false;
  try {
    return createPublicKey(pub.stdout)
      .export({ type: 'spki', format: 'der' })
      .equals(x.publicKey.export({ type: 'spki', format: 'der' }));
  } catch {
    return false;
  }
}

export type SiteBundleState =
  | { kind: 'current' }
  | { kind: 'reissue'; reason: string }
  /** Not the cluster CA's: put there by hand, kept. */
  | { kind: 'foreign'; subject: string; notAfter: Date };

/** What the bundle on a proxy machine is, when the cluster file gives no certificate of its own. */
export async function siteBundleState(shell: RemoteShell, cluster: Cluster, ca: ClusterCa, now: Date = new Date()): Promise<SiteBundleState> {
  const path = cluster.proxy.tlsBundle!;
  const st = (await fileStates(shell, [path])).get(path);
  if (!st) return { kind: 'reissue', reason: 'none yet' };
  // The certificate only: openssl prints the first one of the file, never the key.
  const out = await shell.exec(['openssl', 'x509', '-in', path]);
  let x: X509Certificate | undefined;
  try {
    x = out.code === 0 ? new X509Certificate(out.stdout) : undefined;
  } catch {
    x = undefined;
  }
  const unusable = (what: string) =>
    new VigilError('TLS_BUNDLE', [
      problem(
        `${shell.machine} ${path}`,
        `${what}; it was not made by apply (the cluster CA did not issue it), so apply leaves it alone`,
        `remove it so apply issues one from the cluster CA, or give your certificate and key as proxy.tlsCertificate and proxy.tlsKey in ${cluster.source}; then run \`vigil apply\` again`,
      ),
    ]);
  if (!x) throw unusable('the bundle holds no certificate openssl can read');
  if (!issuedByCa(x, ca)) {
    if (!(await remoteKeyMatches(shell, path, x))) throw unusable('the bundle has no private key that belongs to its certificate');
    if (new Date(x.validTo) <= now) throw unusable(`its certificate expired on ${new Date(x.validTo).toISOString().slice(0, 10)}`);
    return { kind: 'foreign', subject: x.subject.replaceAll('\n', ', '), notAfter: new Date(x.validTo) };
  }
  if (st.mode !== '600' || st.owner !== 'root:root') return { kind: 'reissue', reason: `it is ${st.owner} ${st.mode}` };
  const info = certificateInfo(out.stdout);
  const want = siteNames(cluster);
  const lacks = [...want.ipAddresses.filter((a) => !info.ipAddresses.includes(a)), ...want.dnsNames.filter((d) => !info.dnsNames.includes(d))];
  if (lacks.length) return { kind: 'reissue', reason: `it does not name ${lacks.join(', ')}` };
  if (info.notAfter.getTime() - now.getTime() < RENEW_BEFORE_MS)
    return { kind: 'reissue', reason: `it expires on ${info.notAfter.toISOString().slice(0, 10)}` };
  if (!(await remoteKeyMatches(shell, path, x))) return { kind: 'reissue', reason: 'its key does not match the certificate' };
  return { kind: 'current' };
}

/**
 * `application.backendTls.ca` given as a file: your CA's certificates, with the cluster CA's
 * appended (HAProxy verifies the agents' role check and the traffic of a server with one CA
 * file), as one file for every machine that verifies. Undefined with the cluster CA. Throws
 * TLS_BUNDLE naming the file and the fix.
 */
export async function backendCaFile(cluster: Cluster, clusterCa: () => Promise<string>): Promise<DesiredFile | undefined> {
  const t = cluster.application.backendTls;
  if (!t || t.ca === 'cluster') return undefined;
  const path = besideClusterFile(cluster, t.ca);
  const where = `${path} (application.backendTls.ca in ${cluster.source})`;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new VigilError(
      'TLS_BUNDLE',
      [problem(where, 'the CA file cannot be read', `put your CA's certificate (PEM) there, or write \`ca: cluster\` to use the cluster CA`)],
      { cause: err },
    );
  }
  const pems = [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((x) => x[0]);
  const certs = pems.flatMap((pem) => {
    try {
      return [new X509Certificate(pem)];
    } catch {
      return [];
    }
  });
  if (certs.length === 0 || certs.length !== pems.length)
    throw new VigilError('TLS_BUNDLE', [
      problem(where, 'the file holds no certificate that can be read (PEM, BEGIN CERTIFICATE)', "put your CA's certificate there in PEM form"),
    ]);
  const notCa = certs.find((x) => !x.ca);
  if (notCa)
    throw new VigilError('TLS_BUNDLE', [
      problem(
        where,
        `${notCa.subject.replaceAll('\n', ', ')} is not a CA certificate (basicConstraints CA:FALSE)`,
        "give the certificate of the CA that issued the app machines' certificates, not a server certificate",
      ),
    ]);
  const clusterCaPem = await clusterCa();
  const content = `${pems.join('\n')}\n${clusterCaPem.endsWith('\n') ? clusterCaPem : `${clusterCaPem}\n`}`;
  return { path: PATHS.backendCa, content, sha256: sha256(content), mode: 0o644, owner: 'root:root', secret: false, affects: [] };
}
