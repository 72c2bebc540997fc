/**
 * Certificates and the database password: every machine's certificate and key present, matching,
 * issued by this cluster's CA for the machine's name and address and not expiring soon (and the
 * proxy's HAProxy bundles); the application's database password the same in every file the
 * cluster file lists as in the secrets file (the seed's five files edited by hand). No secret is
 * ever in a finding: only "differs from the secrets file".
 */
import { X509Certificate, createPublicKey } from 'node:crypto';
import { withRole } from '../../config/schema.ts';
import type { Results } from '../results.ts';
import { THRESHOLDS } from '../thresholds.ts';
import type { Identity } from '../types.ts';
import { reachable, type EvalContext } from './context.ts';

const DAY_MS = 86_400_000;

const WHY: Record<Identity['label'], string> = {
  machine:
    'the agent serves its API and the observer and agents authenticate each other with it (mutual TLS): without a valid one the machine drops out of the cluster',
  'haproxy-check': "HAProxy presents it when it checks the agents' role endpoint: without it no app machine passes the check and users get errors",
  'tls-bundle': 'HAProxy serves the application on HTTPS with it: a missing, mismatched or expired one turns users away',
};

/** The same key, compared as SPKI DER (the PEM text may differ in line breaks or header). */
function samePublicKey(a: string, b: string): boolean {
  try {
    return createPublicKey(a)
      .export({ type: 'spki', format: 'der' })
      .equals(createPublicKey(b).export({ type: 'spki', format: 'der' }));
  } catch {
    return false;
  }
}

function checkIdentity(ctx: EvalContext, r: Results, machine: string, address: string, id: Identity, ca: X509Certificate | null): void {
  const what =
    id.label === 'tls-bundle' ? `HAProxy's HTTPS bundle ${id.certPath}` : id.certPath === id.keyPath ? id.certPath : `${id.certPath} (key ${id.keyPath})`;
  const reissue = ctx.fixes.reinstall(
    machine,
    id.label === 'tls-bundle' ? `the HTTPS bundle (certificate, then its key, in ${id.certPath}, mode 600)` : `${machine}'s certificate and key`,
  );
  if (!id.certPem.ok || !id.keyPublicPem.ok) {
    const error = !id.certPem.ok ? id.certPem.error : !id.keyPublicPem.ok ? id.keyPublicPem.error : '';
    r.warn(
      'certificates',
      machine,
      `${what} on ${machine} cannot be checked: ${error}`,
      WHY[id.label],
      ctx.fixes.on(machine, ['openssl', 'x509', '-in', id.certPath, '-noout', '-subject', '-enddate']),
    );
    return;
  }
  const certPem = id.certPem.value;
  const keyPub = id.keyPublicPem.value;
  if (certPem === null) return r.fail('certificates', machine, `${id.certPath} is missing on ${machine}`, WHY[id.label], reissue);
  if (keyPub === null) return r.fail('certificates', machine, `${id.keyPath}, the private key, is missing on ${machine}`, WHY[id.label], reissue);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return r.fail('certificates', machine, `${id.certPath} on ${machine} does not hold a readable certificate`, WHY[id.label], reissue);
  }
  if (!samePublicKey(cert.publicKey.export({ type: 'spki', format: 'pem' }).toString(), keyPub)) {
    r.fail('certificates', machine, `the private key ${id.keyPath} on ${machine} does not belong to the certificate ${id.certPath}`, WHY[id.label], reissue);
  }
  if (id.label !== 'tls-bundle' && ca && !(cert.checkIssued(ca) && cert.verify(ca.publicKey))) {
    r.fail('certificates', machine, `${id.certPath} on ${machine} was not issued by this cluster's CA`, WHY[id.label], reissue);
  }
  if (id.label === 'machine') {
    const cn = /^CN=(.*)$/m.exec(cert.subject)?.[1];
    if (cn !== machine)
      r.fail(
        'certificates',
        machine,
        `${id.certPath} on ${machine} is issued to "${cn ?? ''}", not to ${machine}`,
        'the agents authorise write requests by this name: the machine is refused or taken for another one',
        reissue,
      );
    else if (!cert.checkIP(address))
      r.fail(
        'certificates',
        machine,
        `${id.certPath} on ${machine} does not name the machine's address ${address}`,
        'clients check the address against the certificate and refuse the connection',
        reissue,
      );
  }
  const notAfter = new Date(cert.validTo);
  const days = (notAfter.getTime() - ctx.now.getTime()) / DAY_MS;
  if (days <= 0) r.fail('certificates', machine, `${id.certPath} on ${machine} expired on ${notAfter.toISOString()}`, WHY[id.label], reissue);
  else if (days < THRESHOLDS.certWarnDays)
    r.warn('certificates', machine, `${id.certPath} on ${machine} expires in ${Math.floor(days)} day(s), on ${notAfter.toISOString()}`, WHY[id.label], reissue);
  if (new Date(cert.validFrom) > ctx.now)
    r.fail(
      'certificates',
      machine,
      `${id.certPath} on ${machine} is not valid before ${new Date(cert.validFrom).toISOString()}`,
      'a clock behind, or a certificate from the future: either way it is refused',
      ctx.fixes.on(machine, ['timedatectl']),
    );
}

export function checkCertificates(ctx: EvalContext, r: Results): void {
  const admin = ctx.facts.cluster.adminPki;
  let adminCa: X509Certificate | null = null;
  if (admin.ok) {
    try {
      adminCa = new X509Certificate(admin.value.caPem);
    } catch {
      adminCa = null;
    }
  }
  for (const f of reachable(ctx).values()) {
    if (!f.pki) continue;
    if (!f.pki.ok) {
      r.warn(
        'certificates',
        f.name,
        `the certificates on ${f.name} cannot be checked: ${f.pki.error}`,
        WHY.machine,
        ctx.fixes.on(f.name, ['ls', '-l', '/etc/vigil/pki']),
      );
      continue;
    }
    r.ran('certificates', f.name);
    let ca: X509Certificate | null = null;
    const caPath = '/etc/vigil/pki/ca.pem';
    if (f.pki.value.caPem === null)
      r.fail(
        'certificates',
        f.name,
        `${caPath} is missing on ${f.name}`,
        'the machine cannot verify its peers: every mutual-TLS connection fails',
        ctx.fixes.reinstall(f.name, 'the cluster CA certificate'),
      );
    else {
      try {
        ca = new X509Certificate(f.pki.value.caPem);
      } catch {
        r.fail(
          'certificates',
          f.name,
          `${caPath} on ${f.name} is not a readable certificate`,
          'the machine cannot verify its peers',
          ctx.fixes.reinstall(f.name, 'the cluster CA certificate'),
        );
      }
      if (ca && adminCa && ca.fingerprint256 !== adminCa.fingerprint256) {
        r.fail(
          'certificates',
          f.name,
          `${caPath} on ${f.name} is not this cluster's CA (fingerprint ${ca.fingerprint256.slice(0, 23)}…, the admin's ${adminCa.fingerprint256.slice(0, 23)}…)`,
          "the machine trusts another cluster and refuses this one's agents, observers and HAProxy",
          ctx.fixes.reinstall(f.name, 'the cluster CA certificate'),
        );
      }
      if (ca) {
        const days = (new Date(ca.validTo).getTime() - ctx.now.getTime()) / DAY_MS;
        if (days < THRESHOLDS.certWarnDays) {
          r.add({
            check: 'certificates',
            severity: days <= 0 ? 'fail' : 'warn',
            machine: f.name,
            what: `the cluster CA certificate on ${f.name} ${days <= 0 ? 'expired' : `expires in ${Math.floor(days)} day(s)`} (${new Date(ca.validTo).toISOString()})`,
            why: 'every certificate it signed stops being accepted with it',
            fix: "create a new cluster CA and reissue every machine's certificate (`vigil init`, then `vigil apply`)",
          });
        }
      }
    }
    for (const id of f.pki.value.identities) checkIdentity(ctx, r, f.name, f.address, id, ca ?? adminCa);
  }
}

export function checkPasswords(ctx: EvalContext, r: Results): void {
  if (ctx.cluster.application.passwordFiles.length === 0) return;
  const why =
    'the application on this machine logs in to the database with it: after a failover to this machine the application cannot reach its database and users get errors';
  for (const m of withRole(ctx.cluster, 'app')) {
    const f = reachable(ctx).get(m.name);
    if (!f?.passwords) continue;
    r.ran('passwords', m.name);
    for (const p of f.passwords) {
      const at = p.line ? `${p.path}:${p.line}` : p.path;
      const fix = ctx.fixes.setPassword(m.name, p);
      if (p.symlinkTo !== undefined) {
        r.fail(
          'passwords',
          m.name,
          `${p.path} on ${m.name} is a symbolic link (to ${p.symlinkTo}): \`vigil apply\` refuses to write the password through it`,
          'whoever owns its directory could point it at /etc/shadow or a file root trusts; apply stops at it, so the password is not kept there',
          `on ${m.name}: find out who made the link (ls -l ${p.path}); put the application's own file in its place (if the target is that file: cp --remove-destination ${p.symlinkTo} ${p.path}), or list the target in application.passwordFiles`,
        );
        continue;
      }
      if (p.mode !== undefined && (p.mode & ~0o640 & 0o7777) !== 0) {
        const octal = p.mode.toString(8).padStart(4, '0');
        r.warn(
          'passwords',
          m.name,
          `${p.path} on ${m.name} has mode ${octal}, wider than 0640: ${(p.mode & 0o007) !== 0 ? 'every account on the machine' : 'more than its owner and group'} may read or change the database password`,
          "the password in it is the application's database login; `vigil apply` tightens the mode (to at most 0640) when it writes the file",
          ctx.fixes.on(m.name, ['chmod', (p.mode & 0o640).toString(8).padStart(4, '0'), p.path]),
        );
      }
      switch (p.status) {
        case 'same':
          break;
        case 'differs':
          r.fail('passwords', m.name, `${p.key} in ${at} on ${m.name} differs from the secrets file`, why, fix);
          break;
        case 'missing-file':
          r.fail('passwords', m.name, `${p.path} is missing on ${m.name}`, why, fix);
          break;
        case 'missing-key':
          r.fail('passwords', m.name, `${p.path} on ${m.name} has no ${p.key}`, why, fix);
          break;
        case 'unparseable':
          r.fail('passwords', m.name, `${at} on ${m.name} cannot be read as the cluster file says (${p.detail ?? 'parse error'})`, why, fix);
          break;
        case 'unreadable':
          r.warn('passwords', m.name, `${p.path} on ${m.name} cannot be read: ${p.detail ?? ''}`, why, ctx.fixes.on(m.name, ['ls', '-l', p.path]));
          break;
      }
    }
  }
}
