/**
 * The cluster's own certificate authority. `vigil init` creates it; it issues the certificates
 * the node agents and observers present to each other (mutual TLS) and the one HAProxy presents
 * when it health-checks an agent.
 *
 * THE CA PRIVATE KEY NEVER GOES TO A CLUSTER MACHINE. It stays on the administrator's machine
 * (and, for the lab, in the lab's state directory). A cluster machine receives only `ca.pem`
 * (to verify peers) and its own certificate and key (`machinePkiFiles`). Whoever holds the CA
 * key can mint a certificate for any name and so pass every write check of every agent; one
 * compromised cluster machine must not hand that to an attacker.
 *
 * Certificates are built with @peculiar/x509 over node's WebCrypto (not node-forge, which had a
 * run of signature-verification CVEs); reading them back uses node:crypto's X509Certificate.
 * Keys are ECDSA P-256: small, fast, and accepted by node, OpenSSL and HAProxy alike.
 */
import 'reflect-metadata'; // @peculiar/x509 resolves its services through tsyringe, which needs it
import * as x509 from '@peculiar/x509';
import { X509Certificate, createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ROOTS } from '../layout/paths.ts';
import { VigilError, problem } from '../util/errors.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** A certificate and its private key, both PEM (the key as PKCS#8 "PRIVATE KEY"). */
export interface CertKeyPair {
  certPem: string;
  keyPem: string;
}
export type ClusterCa = CertKeyPair;
export type CertUsage = 'server' | 'client' | 'both';

/** File name → PEM content, as written into one PKI directory. */
export type PkiFiles = Record<string, string>;

/** Where a cluster machine keeps its PKI files: ca.pem, <name>.pem, <name>.key. */
export const PKI_DIR = `${ROOTS.etc}/pki`;
export const CA_CERT_FILE = 'ca.pem';
/** Only ever on the admin's machine or in the lab's state directory; see the header. */
export const CA_KEY_FILE = 'ca.key';

export function pkiPaths(name: string, dir: string = PKI_DIR): { ca: string; cert: string; key: string } {
  checkName(name);
  return { ca: join(dir, CA_CERT_FILE), cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
}

const DAY_MS = 86_400_000;
/** Backdated so a machine whose clock lags a little still accepts a certificate issued just now. */
const BACKDATE_MS = 5 * 60_000;
const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
// Names go into a distinguished name string and file names: no commas, slashes or '='.
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function checkName(name: string, what = 'name'): void {
  if (!NAME_RE.test(name) || name === 'ca') {
    throw new VigilError('USAGE', [
      problem(what, `"${name}" cannot name a certificate`, 'use letters, digits, ".", "_" and "-" (at most 63, not "ca"), such as app1'),
    ]);
  }
}

function toPem(der: ArrayBuffer, label: string): string {
  return x509.PemConverter.encode(der, label) + '\n';
}

/** RFC 5280 wants positive serials of at most 20 bytes; 16 random bytes, high bit clear, never 0-led. */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x40;
  return b.toString('hex');
}

async function newKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function exportKey(key: CryptoKey): Promise<string> {
  return toPem(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

/** Imports a PEM private key (PKCS#8 or SEC1, as openssl may have rewritten it) for signing. */
async function importSigningKey(keyPem: string): Promise<CryptoKey> {
  const der = createPrivateKey(keyPem).export({ format: 'der', type: 'pkcs8' });
  return (await webcrypto.subtle.importKey('pkcs8', der, EC, false, ['sign'])) as CryptoKey;
}

function validity(days: number, now: Date): { notBefore: Date; notAfter: Date } {
  if (!Number.isInteger(days) || days < 1)
    throw new VigilError('USAGE', [problem('days', `${days} is not a number of days`, 'pass a whole number of days, at least 1')]);
  return { notBefore: new Date(now.getTime() - BACKDATE_MS), notAfter: new Date(now.getTime() + days * DAY_MS) };
}

/** Creates the cluster CA: self-signed, CA:TRUE with path length 0 (it signs leaves only), 10 years. */
export async function createClusterCa(opts: { clusterName: string; days?: number; now?: Date }): Promise<ClusterCa> {
  checkName(opts.clusterName, 'cluster name');
  const keys = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=Vigil cluster CA ${opts.clusterName}, O=Vigil`,
    ...validity(opts.days ?? 3650, opts.now ?? new Date()),
    keys,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: toPem(cert.rawData, 'CERTIFICATE'), keyPem: await exportKey(keys.privateKey) };
}

export interface IssueOptions {
  /** The machine's (or HAProxy's) name; agents authorise write requests by it. */
  commonName: string;
  ipAddresses: string[];
  dnsNames?: string[];
  usage: CertUsage;
  days?: number;
  now?: Date;
}

/** Issues a leaf certificate signed by the cluster CA, with a fresh key, for 2 years by default. */
export async function issueCertificate(ca: ClusterCa, opts: IssueOptions): Promise<CertKeyPair> {
  checkName(opts.commonName, 'common name');
  const bad = opts.ipAddresses.find((a) => !isIP(a));
  if (bad !== undefined) throw new VigilError('USAGE', [problem(opts.commonName, `"${bad}" is not an IP address`, 'pass addresses such as 10.0.0.10')]);
  const badDns = (opts.dnsNames ?? []).find((d) => !/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(d));
  if (badDns !== undefined)
    throw new VigilError('USAGE', [problem(opts.commonName, `"${badDns}" is not a DNS name`, 'pass host names such as app1.example.lan')]);
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importSigningKey(ca.keyPem);
  const keys = await newKeyPair();
  const san: x509.JsonGeneralNames = [
    ...[...new Set(opts.dnsNames ?? [])].map((value) => ({ type: 'dns' as const, value })),
    ...[...new Set(opts.ipAddresses)].map((value) => ({ type: 'ip' as const, value })),
  ];
  const eku = {
    server: [x509.ExtendedKeyUsage.serverAuth],
    client: [x509.ExtendedKeyUsage.clientAuth],
    both: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
  }[opts.usage];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    // ECDSA keys sign the handshake; they never encipher keys, so digitalSignature only.
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(eku, false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
  ];
  // A server certificate without SAN fails hostname checks everywhere; clients may go without.
  if (san.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(san, false));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${opts.commonName}, O=Vigil`,
    issuer: caCert.subjectName, // the CA's exact encoding, so chain building matches byte for byte
    ...validity(opts.days ?? 730, opts.now ?? new Date()),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGN,
    extensions,
  });
  return { certPem: toPem(cert.rawData, 'CERTIFICATE'), keyPem: await exportKey(keys.privateKey) };
}

/** The CA's own files, for the admin's machine or the lab's state directory only. */
export function caFiles(ca: ClusterCa): PkiFiles {
  return { [CA_CERT_FILE]: ca.certPem, [CA_KEY_FILE]: ca.keyPem };
}

/**
 * What one cluster machine gets: the CA certificate and its own certificate and key. Never the
 * CA key (see the header); the test suite checks that no CA private key is in here.
 */
export async function machinePkiFiles(ca: ClusterCa, machine: { name: string; address: string }, usage: CertUsage = 'both'): Promise<PkiFiles> {
  const { certPem, keyPem } = await issueCertificate(ca, { commonName: machine.name, ipAddresses: [machine.address], usage });
  return { [CA_CERT_FILE]: ca.certPem, [`${machine.name}.pem`]: certPem, [`${machine.name}.key`]: keyPem };
}

/** Certificate then key in one file, as HAProxy's `crt` wants it. Write it mode 600 (writePki does). */
export function pemBundle(certPem: string, keyPem: string): string {
  const nl = (s: string) => (s.endsWith('\n') ? s : `${s}\n`);
  return nl(certPem) + nl(keyPem);
}

const isSecret = (content: string): boolean => content.includes('PRIVATE KEY-----');

/**
 * Writes each file atomically (temp file in the same directory, fsync, rename) so a reader never
 * sees half a key or a certificate without its key being complete. The mode follows the content,
 * not the name: anything holding a private key is 600 (a bundle too), the rest 644.
 */
export async function writePki(dir: string, files: PkiFiles): Promise<void> {
  for (const name of Object.keys(files)) {
    if (name.includes('/') || name === '.' || name === '..' || name === '') {
      throw new VigilError('USAGE', [problem(dir, `"${name}" is not a file name`, 'pass bare file names such as app1.pem')]);
    }
    if (dir === PKI_DIR && name === CA_KEY_FILE) {
      throw new VigilError('USAGE', [
        problem(
          join(dir, name),
          'the CA private key must not be written on a cluster machine',
          "keep it on the admin's machine; send machines ca.pem and their own certificate only (machinePkiFiles)",
        ),
      ]);
    }
  }
  await mkdir(dir, { recursive: true, mode: 0o755 });
  for (const [name, content] of Object.entries(files)) {
    const mode = isSecret(content) ? 0o600 : 0o644;
    const path = join(dir, name);
    const tmp = join(dir, `.${name}.tmp-${randomBytes(4).toString('hex')}`);
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(content);
      await fh.chmod(mode); // whatever the umask
      await fh.sync();
    } catch (err) {
      await fh.close();
      await rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    await rename(tmp, path);
  }
}

/** A machine's PKI as loaded from disk: PEM strings ready for createMtlsServer / mtlsFetch. */
export interface LoadedPki {
  name: string;
  ca: string;
  cert: string;
  key: string;
}

const fail = (where: string, message: string, fix: string, cause?: unknown): never => {
  throw new VigilError('TLS_BUNDLE', [problem(where, message, fix)], { cause });
};

async function readPem(path: string, secret: boolean): Promise<string> {
  try {
    const st = await stat(path);
    // A key others could read must be treated as leaked, whatever it is: refuse to use it.
    if (secret && (st.mode & 0o077) !== 0) {
      fail(
        path,
        `the private key has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}: group or others can read it`,
        `chmod 600 ${path}, and reissue the certificate if others had access`,
      );
    }
    return await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof VigilError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    return fail(
      path,
      code === 'ENOENT' ? 'the file does not exist' : `the file cannot be read (${code ?? String(err)})`,
      "reissue this machine's certificates from the admin machine (vigil pki)",
      err,
    );
  }
}

/**
 * Loads ca.pem and one machine's cert and key from `dir` (the only `<name>.key` there when no
 * name is given) and checks them: key matches certificate, certificate issued and signed by the
 * CA, currently valid. Throws VigilError('TLS_BUNDLE') naming the file and the fix.
 */
export async function loadPki(dir: string = PKI_DIR, name?: string, now: Date = new Date()): Promise<LoadedPki> {
  if (name === undefined) {
    const entries = await readdir(dir).catch((err: unknown) =>
      fail(dir, 'the PKI directory cannot be read', "reissue this machine's certificates from the admin machine (vigil pki)", err),
    );
    const keys = entries.filter((f) => f.endsWith('.key') && f !== CA_KEY_FILE && !f.startsWith('.'));
    if (keys.length !== 1)
      fail(
        dir,
        keys.length === 0 ? 'no machine key (<name>.key) is here' : `several machine keys are here (${keys.join(', ')})`,
        "keep exactly this machine's <name>.pem and <name>.key, or name the machine",
      );
    name = keys[0]!.slice(0, -'.key'.length);
  }
  const paths = pkiPaths(name, dir);
  const [ca, cert, key] = [await readPem(paths.ca, false), await readPem(paths.cert, false), await readPem(paths.key, true)];
  let caX: X509Certificate;
  let certX: X509Certificate;
  try {
    caX = new X509Certificate(ca);
  } catch (err) {
    return fail(paths.ca, 'the CA certificate cannot be parsed', 'copy ca.pem again from the admin machine', err);
  }
  try {
    certX = new X509Certificate(cert);
  } catch (err) {
    return fail(paths.cert, 'the certificate cannot be parsed', 'reissue it from the admin machine', err);
  }
  let keyOk = false;
  try {
    keyOk = certX.checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    fail(paths.key, 'the private key cannot be parsed', 'reissue the certificate and key from the admin machine', err);
  }
  if (!keyOk) fail(paths.key, 'the private key does not belong to the certificate', `reissue ${name}.pem and ${name}.key together`);
  if (!certX.checkIssued(caX) || !certX.verify(caX.publicKey)) {
    fail(paths.cert, "the certificate was not issued by this cluster's CA (ca.pem)", 'reissue it with the cluster CA, or copy the matching ca.pem');
  }
  for (const [path, x] of [
    [paths.ca, caX],
    [paths.cert, certX],
  ] as const) {
    if (new Date(x.validTo) <= now) fail(path, `the certificate expired on ${new Date(x.validTo).toISOString()}`, 'reissue it from the admin machine');
    if (new Date(x.validFrom) > now)
      fail(path, `the certificate is not valid before ${new Date(x.validFrom).toISOString()}`, "check this machine's clock (timedatectl)");
  }
  return { name, ca, cert, key };
}

/** Loads the CA (certificate and key) from the admin's directory. */
export async function loadCa(dir: string): Promise<ClusterCa> {
  const certPem = await readPem(join(dir, CA_CERT_FILE), false);
  const keyPem = await readPem(join(dir, CA_KEY_FILE), true);
  try {
    if (!new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem))) throw new Error('mismatch');
  } catch (err) {
    fail(join(dir, CA_KEY_FILE), 'the CA key does not match ca.pem or cannot be parsed', 'restore ca.pem and ca.key together from your backup', err);
  }
  return { certPem, keyPem };
}

export interface CertificateInfo {
  /** As node prints it, one attribute a line: "CN=app1\nO=Vigil". */
  subject: string;
  commonName: string;
  issuer: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  ipAddresses: string[];
  dnsNames: string[];
  /** "AB:CD:…", as `openssl x509 -fingerprint -sha256` prints it. */
  fingerprint256: string;
  isCa: boolean;
}

export function certificateInfo(pem: string): CertificateInfo {
  const node = new X509Certificate(pem);
  const names = new x509.X509Certificate(pem).getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [];
  return {
    subject: node.subject,
    commonName: /^CN=(.*)$/m.exec(node.subject)?.[1] ?? '',
    issuer: node.issuer,
    serialNumber: node.serialNumber,
    notBefore: new Date(node.validFrom),
    notAfter: new Date(node.validTo),
    ipAddresses: names.filter((n) => n.type === 'ip').map((n) => n.value),
    dnsNames: names.filter((n) => n.type === 'dns').map((n) => n.value),
    fingerprint256: node.fingerprint256,
    isCa: node.ca,
  };
}
