/**
 * The application's own HTTPS endpoints (`application.tlsEndpoints`), the seed's last
 * troubleshooting item: "HTTPS port not listening after restart: re-open appsettings.json and
 * confirm the leading underscore is removed from both CertificateFilePath and KeyFilePath, the
 * file paths are correct and accessible, and the path separator matches the OS; restart the
 * poller service". On every app machine (a standby starts the service after a failover and reads
 * the same file then): the keys present and not disabled, the paths in this OS's form, existing,
 * readable by the service's user, the key belonging to the certificate, the certificate not
 * expiring; on the active machine also that the port listens. Every finding names the machine,
 * the file, the key, the fix and the service to restart.
 */
import { X509Certificate, createPublicKey } from 'node:crypto';
import { dirname } from 'node:path';
import { withRole } from '../../config/schema.ts';
import { fileNameOf, keySegments, pathProblem } from '../../facts/app-settings.ts';
import type { Results } from '../results.ts';
import { THRESHOLDS } from '../thresholds.ts';
import type { MachineFacts, TlsEndpointFact, TlsPathFact } from '../types.ts';
import { activeNode, reachable, type EvalContext } from './context.ts';

const DAY_MS = 86_400_000;

const sameKey = (certPem: string, keyPublicPem: string): boolean => {
  try {
    return new X509Certificate(certPem).publicKey
      .export({ type: 'spki', format: 'der' })
      .equals(createPublicKey(keyPublicPem).export({ type: 'spki', format: 'der' }));
  } catch {
    return false;
  }
};

interface Where {
  ctx: EvalContext;
  r: Results;
  machine: string;
  /** true: the active machine; false: a standby; null: not known. */
  active: boolean | null;
  e: TlsEndpointFact;
  why: string;
}

/** What to restart after an edit, by whether the service runs here. */
function restart(w: Where): string {
  const cmd = w.ctx.fixes.on(w.machine, ['systemctl', 'restart', w.e.unit]);
  if (w.active === true) return `then restart ${w.e.unit}: ${cmd}`;
  if (w.active === false)
    return `${w.e.unit} runs only on the active machine: it reads the file when it starts on ${w.machine} after a failover, so nothing to restart there now`;
  return `then restart ${w.e.unit} where it runs, the active machine (${cmd} if that is ${w.machine})`;
}

/** An edit of the settings file, then the restart; `vigil apply` where Vigil writes that file itself. */
function edit(w: Where, instruction: string): string {
  // On real machines apply writes a file Vigil renders again; a lab machine gets it only when the lab is built.
  const rendered = w.ctx.platform === 'systemd' && w.ctx.rendered.get(w.machine)?.some((f) => f.path === w.e.file);
  const apply = rendered ? ` (or ${w.ctx.fixes.reinstall(w.machine, w.e.file)})` : '';
  return `${instruction} in ${w.e.file} on ${w.machine}${apply}; ${restart(w)}`;
}

/** Read access for the service's user to one file. */
function grant(w: Where, path: string): string {
  const user = w.e.credentials.ok ? w.e.credentials.value.user : 'the service user';
  return `${w.ctx.fixes.on(w.machine, ['chown', user, path])}; ${w.ctx.fixes.on(w.machine, ['chmod', 'u+r', path])} (and let ${user} search its directories); ${restart(w)}`;
}

/** "root, the user X runs as", and why root is refused. */
function userOf(w: Where): string {
  if (!w.e.credentials.ok) return `the user ${w.e.unit} runs as`;
  const c = w.e.credentials.value;
  const root = c.user === 'root' || c.user === '0';
  return `${c.user}, the user ${w.e.unit} runs as${root && !c.bypassesPermissions ? ' (its unit takes away the capabilities that let root read any file)' : ''}`;
}

const at = (w: Where, line?: number) => (line ? `${w.e.file}:${line}` : w.e.file);

/** A Linux path to suggest for a badly written one: beside the other (good) path, else a placeholder directory. */
function suggestion(value: string, other: TlsPathFact | undefined): string {
  const good = other?.lookup.status === 'found' && pathProblem(other.lookup.value) === null ? dirname(other.lookup.value) : '/path/to';
  return `${good}/${fileNameOf(value)}`;
}

function checkPath(w: Where, p: TlsPathFact, other: TlsPathFact | undefined): void {
  const { r, machine: m } = w;
  const L = p.lookup;
  const fail = (what: string, fix: string) => r.fail('app-tls', m, what, w.why, fix);
  if (L.status === 'missing')
    return fail(
      `${w.e.file} on ${m} has no ${p.key}: ${w.e.service} has no ${p.what} for its HTTPS port ${w.e.port}`,
      edit(w, `add ${p.key} with the path of the ${p.what} file`),
    );
  if (L.status === 'disabled') {
    const where = at(w, L.line);
    if (L.how === 'comment') return fail(`${p.key} in ${where} on ${m} is commented out`, edit(w, `remove the comment sign before ${p.key}`));
    const off = keySegments(L.written).at(-1) ?? L.written;
    const on = off.replace(/^_+/, '');
    return fail(`${L.written} in ${where} on ${m} is disabled by a leading underscore; rename ${off} to ${on}`, edit(w, `rename ${off} to ${on}`));
  }
  if (L.status === 'not-a-string' && L.detail) return fail(`${p.key} in ${at(w, L.line)} on ${m} cannot be read: ${L.detail}`, edit(w, 'correct the syntax'));
  if (L.status === 'not-a-string')
    return fail(`${p.key} in ${at(w, L.line)} on ${m} is not a path (a JSON string)`, edit(w, `set ${p.key} to the path of the ${p.what} file`));
  const value = L.value;
  const where = `${p.key} in ${at(w, L.line)} on ${m}`;
  switch (pathProblem(value)) {
    case 'empty':
      return fail(`${where} is empty`, edit(w, `set ${p.key} to the path of the ${p.what} file`));
    case 'windows':
      return fail(
        `${where} is ${value}, a Windows path: ${m} runs Linux, where paths start with / and use / between directories`,
        edit(w, `set ${p.key} to the ${p.what}'s path on ${m}, e.g. ${suggestion(value, other)}`),
      );
    case 'backslash':
      return fail(
        `${where} is ${value}: the backslash is the Windows path separator; on Linux it is part of a file name`,
        edit(w, `write the path with /, e.g. ${value.replaceAll('\\', '/')}`),
      );
    case 'relative':
      r.warn(
        'app-tls',
        m,
        `${where} is ${value}, a relative path: it depends on ${w.e.unit}'s working directory`,
        w.why,
        edit(w, `set ${p.key} to the absolute path`),
      );
      return;
  }
  if (p.exists === false)
    return fail(
      `${where} names ${value}, which does not exist on ${m}`,
      `put the ${p.what} at ${value}, or ${edit(w, `set ${p.key} to where the ${p.what} is`)}`,
    );
  if (p.readable && !p.readable.ok) {
    r.warn(
      'app-tls',
      m,
      `whether ${w.e.unit} may read ${value} (${p.key}) on ${m} cannot be checked: ${p.readable.error}`,
      w.why,
      w.ctx.fixes.on(m, ['ls', '-l', value]),
    );
  } else if (p.readable?.value === false) {
    fail(`${value} (${p.key} in ${w.e.file}) on ${m} is not readable by ${userOf(w)}`, grant(w, value));
  }
  if (p.pem && !p.pem.ok)
    fail(
      `${value} (${p.key} in ${w.e.file}) on ${m} does not hold a readable ${p.what === 'key' ? 'private key without a passphrase' : 'certificate'}: ${p.pem.error}`,
      `put the PEM ${p.what} at ${value}; ${restart(w)}`,
    );
}

function checkPair(w: Where, cert: TlsPathFact, key: TlsPathFact): void {
  if (!cert.pem?.ok || !key.pem?.ok || cert.lookup.status !== 'found' || key.lookup.status !== 'found') return;
  const { r, machine: m, ctx } = w;
  const certPath = cert.lookup.value;
  const keyPath = key.lookup.value;
  if (cert.pem.value === null || key.pem.value === null) return;
  let x: X509Certificate;
  try {
    x = new X509Certificate(cert.pem.value);
  } catch {
    return r.fail(
      'app-tls',
      m,
      `${certPath} (${cert.key} in ${w.e.file}) on ${m} does not hold a readable certificate`,
      w.why,
      `put the PEM certificate at ${certPath}; ${restart(w)}`,
    );
  }
  if (!sameKey(cert.pem.value, key.pem.value))
    r.fail(
      'app-tls',
      m,
      `the private key ${keyPath} (${key.key} in ${w.e.file}) on ${m} does not belong to the certificate ${certPath} (${cert.key})`,
      `${w.e.service} cannot serve HTTPS with a certificate whose key it does not hold: port ${w.e.port} does not open`,
      edit(w, `set ${key.key} to the certificate's own key (or put a certificate issued for this key at ${certPath})`),
    );
  const renew = `put a renewed certificate at ${certPath}; ${restart(w)}`;
  const v = validity(x, ctx.now);
  const named = `${certPath} (${cert.key} in ${w.e.file}) on ${m}`;
  if (v.state === 'expired') r.fail('app-tls', m, `${named} expired on ${v.notAfter.toISOString()}`, w.why, renew);
  else if (v.state === 'expiring') r.warn('app-tls', m, `${named} expires in ${v.days} day(s), on ${v.notAfter.toISOString()}`, w.why, renew);
  else if (v.state === 'not-yet') r.fail('app-tls', m, `${named} is not valid before ${v.notBefore.toISOString()}`, w.why, renew);
}

/**
 * A certificate's validity now: expired, not yet valid, expiring within the warning threshold, or
 * fine. Shared by the application's own HTTPS (here) and the proxy's HTTPS to the app machines
 * (backend-tls.ts).
 */
export function validity(x: X509Certificate, now: Date): { state: 'expired' | 'not-yet' | 'expiring' | 'ok'; notAfter: Date; notBefore: Date; days: number } {
  const notAfter = new Date(x.validTo);
  const notBefore = new Date(x.validFrom);
  const left = (notAfter.getTime() - now.getTime()) / DAY_MS;
  const days = Math.floor(left);
  if (left <= 0) return { state: 'expired', notAfter, notBefore, days };
  if (notBefore > now) return { state: 'not-yet', notAfter, notBefore, days };
  return { state: left < THRESHOLDS.certWarnDays ? 'expiring' : 'ok', notAfter, notBefore, days };
}

function checkListening(w: Where, f: MachineFacts, before: number): void {
  if (w.active !== true || !f.listeners?.ok) return;
  if (f.listeners.value.some((l) => l.port === w.e.port)) return;
  const { ctx, machine: m, e } = w;
  const cmd = ctx.fixes.on(m, ['systemctl', 'restart', e.unit]);
  // Findings about the file just above say what to put right first.
  const fix =
    w.r.findings.length > before
      ? `put right the findings above about ${e.file} and the files it names on ${m}, then restart ${e.unit}: ${cmd}`
      : `restart ${e.unit}: ${cmd} (\`journalctl -u ${e.unit} -n 50\` says why it did not open the port)`;
  w.r.fail(
    'app-tls',
    m,
    `nothing listens on TCP port ${e.port} on ${m}, the active machine: the HTTPS endpoint of ${e.service} (${e.unit}, configured in ${e.file}) is not up`,
    `clients of ${e.service}'s HTTPS port are refused (the seed's "HTTPS port not listening after restart")`,
    fix,
  );
}

export function checkAppTls(ctx: EvalContext, r: Results): void {
  if (ctx.cluster.application.tlsEndpoints.length === 0) return;
  const act = activeNode(ctx);
  for (const m of withRole(ctx.cluster, 'app')) {
    const f = reachable(ctx).get(m.name);
    if (!f?.tlsEndpoints) continue;
    r.ran('app-tls', m.name);
    const active = 'node' in act ? act.node === m.name : null;
    for (const e of f.tlsEndpoints) {
      const why = `after a restart or a failover ${e.service} opens no HTTPS port ${e.port} on ${m.name} without it (the seed's "HTTPS port not listening after restart")`;
      const w: Where = { ctx, r, machine: m.name, active, e, why };
      const before = r.findings.length;
      const s = e.settings;
      if (s.status === 'missing-file') {
        r.fail(
          'app-tls',
          m.name,
          `${e.file}, where ${e.service} reads its HTTPS certificate and key, is missing on ${m.name}`,
          why,
          `put ${e.file} back on ${m.name} (a copy from the active machine, or the application's installation); ${restart(w)}`,
        );
      } else if (s.status === 'unreadable') {
        r.warn('app-tls', m.name, `${e.file} on ${m.name} cannot be read: ${s.detail}`, why, ctx.fixes.on(m.name, ['ls', '-l', e.file]));
      } else if (s.status === 'unparseable') {
        r.fail(
          'app-tls',
          m.name,
          `${at(w, s.line)} on ${m.name} is not valid ${e.format === 'json' ? 'JSON' : e.format}: ${s.detail}`,
          why,
          edit(w, 'correct the syntax'),
        );
      } else {
        if (!e.credentials.ok)
          r.warn(
            'app-tls',
            m.name,
            `the user ${e.unit} runs as on ${m.name} is not known: ${e.credentials.error}`,
            why,
            ctx.fixes.on(m.name, ['systemctl', 'cat', e.unit]),
          );
        else if (e.settingsReadable?.ok && !e.settingsReadable.value)
          r.fail('app-tls', m.name, `${e.file} on ${m.name} is not readable by ${userOf(w)}`, why, grant(w, e.file));
        const cert = e.paths.find((p) => p.what === 'certificate');
        const key = e.paths.find((p) => p.what === 'key');
        if (cert) checkPath(w, cert, key);
        if (key) checkPath(w, key, cert);
        if (cert && key) checkPair(w, cert, key);
      }
      checkListening(w, f, before);
    }
  }
}
