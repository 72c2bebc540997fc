/**
 * HAProxy's certificate bundle for :443 (certificate, optional chain, then the private key, PEM,
 * one file). HAProxy refuses to start on a bundle whose key does not match, and an expired
 * certificate takes the whole site down for users; both are checked before a config that uses
 * the bundle is rendered or reloaded.
 */
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { VigilError, problem } from '../util/errors.ts';

const run = promisify(execFile);

const MAKE = (path: string) =>
  `put the certificate (then any intermediate certificates) and then its private key into one file: \`cat server.crt server.key > ${path} && chmod 600 ${path}\``;

const fail = (path: string, message: string, fix: string, cause?: unknown): never => {
  throw new VigilError('TLS_BUNDLE', [problem(path, message, fix)], { cause });
};

const PEM_RE = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** Checks that `path` is a usable HAProxy bundle; throws VigilError('TLS_BUNDLE') naming the fix. */
export async function checkTlsBundle(path: string, now: Date = new Date()): Promise<void> {
  let mode: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) fail(path, 'the certificate bundle is not a regular file', MAKE(path));
    mode = st.mode;
  } catch (err) {
    if (err instanceof VigilError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    return fail(
      path,
      code === 'ENOENT' ? 'the certificate bundle does not exist' : `the certificate bundle cannot be read (${code ?? String(err)})`,
      code === 'ENOENT' ? MAKE(path) : `check the path and the permissions of ${path}`,
      err,
    );
  }
  // Checked first: a private key others could read must be treated as leaked, whatever it is.
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    fail(
      path,
      `the certificate bundle has mode ${octal}: group or others can read its private key`,
      `chmod 600 ${path} (and consider the key compromised if others had access)`,
    );
  }
  const text = await readFile(path, 'utf8').catch((err: unknown) =>
    fail(path, 'the certificate bundle cannot be read', `check the permissions of ${path}`, err),
  );
  checkTlsBundleText(text, path, now);
}

/**
 * Checks a bundle's text: certificates (the server's first), then one private key without a
 * passphrase that belongs to the first certificate, valid now. `path` names it in errors (a
 * file on this machine, or the admin's files a bundle is built from).
 */
export function checkTlsBundleText(text: string, path: string, now: Date = new Date()): void {
  const blocks = [...text.matchAll(PEM_RE)].map((m) => ({ type: m[1]!, pem: m[0] }));
  const certs = blocks.filter((b) => b.type === 'CERTIFICATE');
  const keys = blocks.filter((b) => b.type.endsWith('PRIVATE KEY'));
  if (certs.length === 0) fail(path, 'the bundle contains no certificate (no BEGIN CERTIFICATE block)', MAKE(path));
  if (keys.length === 0) fail(path, 'the bundle contains no private key (no BEGIN PRIVATE KEY block)', MAKE(path));
  if (keys.length > 1) fail(path, `the bundle contains ${keys.length} private keys`, 'keep only the key of the server certificate in the bundle');
  const keyBlock = keys[0]!;
  if (keyBlock.type === 'ENCRYPTED PRIVATE KEY' || keyBlock.pem.includes('Proc-Type: 4,ENCRYPTED')) {
    fail(
      path,
      'the private key is protected by a passphrase, which HAProxy cannot ask for at start',
      `decrypt it once: \`openssl pkey -in server.key -out server-plain.key\`, rebuild the bundle with it and chmod 600 ${path}`,
    );
  }
  let cert: X509Certificate;
  let key: KeyObject;
  try {
    cert = new X509Certificate(certs[0]!.pem);
  } catch (err) {
    return fail(
      path,
      'the first certificate of the bundle cannot be parsed',
      'replace it with the PEM certificate of the server (openssl x509 -in server.crt -noout -text must read it)',
      err,
    );
  }
  try {
    key = createPrivateKey(keyBlock.pem);
  } catch (err) {
    return fail(
      path,
      'the private key of the bundle cannot be parsed',
      'replace it with the PEM private key of the certificate (openssl pkey -in server.key -noout must read it)',
      err,
    );
  }
  if (!cert.checkPrivateKey(key)) {
    fail(
      path,
      `the private key does not belong to the certificate (${cert.subject.replaceAll('\n', ', ')})`,
      'use the key that was generated together with this certificate (its CSR), with the server certificate first in the file',
    );
  }
  if (new Date(cert.validTo) <= now) {
    fail(
      path,
      `the certificate expired on ${new Date(cert.validTo).toISOString()}`,
      'renew the certificate with your CA (or create a new self-signed one for a lab) and rebuild the bundle',
    );
  }
  if (new Date(cert.validFrom) > now) {
    fail(
      path,
      `the certificate is not valid before ${new Date(cert.validFrom).toISOString()}`,
      "check this machine's clock (timedatectl) or wait until the certificate becomes valid",
    );
  }
}

/**
 * Writes a self-signed bundle (P-256 key, certificate valid `days` days) for the lab and tests.
 * The key is created by openssl inside a private temp directory, never passed on a command line,
 * and the bundle is written mode 0600 and renamed into place.
 */
export async function createSelfSignedBundle(path: string, commonName: string, ipAddresses: string[], opts: { days?: number } = {}): Promise<void> {
  if (!/^[A-Za-z0-9*][A-Za-z0-9.*-]{0,62}$/.test(commonName)) {
    throw new VigilError('USAGE', [problem('common name', `"${commonName}" is not a host name`, 'use a host name such as vigil.example.lan')]);
  }
  const bad = ipAddresses.find((a) => !isIP(a));
  if (bad !== undefined) throw new VigilError('USAGE', [problem('IP addresses', `"${bad}" is not an IP address`, 'pass addresses such as 10.0.0.10')]);
  const san = [
    ...(isIP(commonName) ? [] : [`DNS:${commonName}`]),
    ...[...new Set([...(isIP(commonName) ? [commonName] : []), ...ipAddresses])].map((a) => `IP:${a}`),
  ];
  const dir = await mkdtemp(join(tmpdir(), 'vigil-tls-'));
  try {
    const keyFile = join(dir, 'key.pem');
    const certFile = join(dir, 'cert.pem');
    const args = [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      String(opts.days ?? 825),
      '-subj',
      `/CN=${commonName}`,
    ];
    if (san.length > 0) args.push('-addext', `subjectAltName=${san.join(',')}`);
    try {
      await run('openssl', args, { timeout: 30_000 });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr ?? '';
      throw new VigilError(
        'TLS_BUNDLE',
        [
          problem(
            path,
            `openssl could not create the certificate: ${stderr.trim() || String(err)}`,
            'install openssl (apt-get install openssl / dnf install openssl)',
          ),
        ],
        { cause: err },
      );
    }
    const bundle = (await readFile(certFile, 'utf8')) + (await readFile(keyFile, 'utf8'));
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(bundle);
      await fh.chmod(0o600); // whatever the umask
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
