/**
 * HTTPS from the proxy to the application machines (`application.backendTls`), seen from each
 * proxy machine as HAProxy sees it: the certificate each app machine's nginx presents chains to
 * the CA file HAProxy verifies with, names the machine (HAProxy's `verifyhost`), and is valid and
 * not expiring. A certificate HAProxy refuses takes its machine out of the app backend: on the
 * active machine that is a failover, or users' 503s when no other machine can take over.
 */
import { X509Certificate } from 'node:crypto';
import { clusterWarnings } from '../../config/cross-checks.ts';
import { withRole } from '../../config/schema.ts';
import { PATHS } from '../../layout/paths.ts';
import type { Results } from '../results.ts';
import type { BackendTlsServerFact } from '../types.ts';
import { validity } from './app-tls.ts';
import { activeNode, reachable, type EvalContext } from './context.ts';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

const parse = (pem: string): X509Certificate | undefined => {
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
};

const signedBy = (x: X509Certificate, issuer: X509Certificate): boolean => x.checkIssued(issuer) && x.verify(issuer.publicKey);

/** Whether `leaf` chains to one of `cas` through the intermediates the server sent (OpenSSL's rule: the anchors are the CA file's). */
export function chainsTo(leaf: X509Certificate, intermediates: X509Certificate[], cas: X509Certificate[]): boolean {
  let current = leaf;
  for (let depth = 0; depth <= intermediates.length; depth++) {
    if (cas.some((ca) => signedBy(current, ca))) return true;
    const next = intermediates.find((i) => i.ca && signedBy(current, i));
    if (!next) return false;
    current = next;
  }
  return false;
}

export function checkBackendTls(ctx: EvalContext, r: Results): void {
  const t = ctx.cluster.application.backendTls;
  if (!t) return;
  const act = activeNode(ctx);
  const active = 'node' in act ? act.node : undefined;
  const ownCa = t.ca !== 'cluster';
  for (const proxy of withRole(ctx.cluster, 'proxy')) {
    const facts = reachable(ctx).get(proxy.name)?.backendTls;
    if (!facts) continue;
    r.ran('backend-tls', proxy.name);
    for (const w of clusterWarnings(ctx.cluster))
      r.warn('backend-tls', proxy.name, w.message, 'a certificate check that accepts anything does not check', w.fix);
    if (!facts.caPem.ok) {
      r.warn(
        'backend-tls',
        proxy.name,
        `${facts.caFile} on ${proxy.name} cannot be read: ${facts.caPem.error}`,
        "the app machines' certificates cannot be checked",
        ctx.fixes.on(proxy.name, ['ls', '-l', facts.caFile]),
      );
      continue;
    }
    const cas = facts.caPem.value === null ? [] : [...facts.caPem.value.matchAll(PEM_CERT)].flatMap((x) => parse(x[0]) ?? []);
    if (t.verify && cas.length === 0) {
      r.fail(
        'backend-tls',
        proxy.name,
        `${facts.caFile}, the CA HAProxy verifies the app machines' certificates with, is ${facts.caPem.value === null ? 'missing' : 'not a readable certificate'} on ${proxy.name}`,
        'HAProxy refuses to start with it (`haproxy -c` fails), and refuses every app machine',
        ctx.fixes.reinstall(proxy.name, facts.caFile),
      );
      continue;
    }
    for (const s of facts.servers) checkServer(ctx, r, { proxy: proxy.name, s, cas, active, ownCa, verify: t.verify, caFile: facts.caFile });
  }
}

interface ServerCheck {
  proxy: string;
  s: BackendTlsServerFact;
  cas: X509Certificate[];
  active: string | null | undefined;
  ownCa: boolean;
  verify: boolean;
  caFile: string;
}

function checkServer(ctx: EvalContext, r: Results, c: ServerCheck): void {
  const { s, proxy } = c;
  const m = s.machine;
  const isActive = c.active === m;
  let chain: string[];
  let shown: string;
  if (s.chain.ok) {
    chain = s.chain.value;
    shown = `nginx on ${m} presents to ${proxy} (${s.target})`;
  } else if (isActive) {
    return r.fail(
      'backend-tls',
      m,
      `${proxy} cannot make a TLS connection to nginx on ${m}, the active machine (${s.target}): ${s.chain.error}`,
      "HAProxy's traffic to the active machine fails: users get errors",
      `${ctx.fixes.start(m, 'nginx')} (\`journalctl -u vigil-nginx -n 50\` on ${m} says why it does not serve)`,
    );
  } else {
    // nginx runs on the active machine only: a standby's certificate is read from its file, the one nginx serves after a failover.
    const file = reachable(ctx).get(m)?.nginxCert;
    if (!file?.ok || file.value.pem === null) {
      if (file?.ok)
        r.fail(
          'backend-tls',
          m,
          `${file.value.path}, the certificate nginx serves the proxy, is missing on ${m}`,
          `nginx cannot start on ${m}: a failover to it fails`,
          replace(ctx, c),
        );
      return;
    }
    chain = [...file.value.pem.matchAll(PEM_CERT)].map((x) => x[0]);
    shown = `${file.value.path} on ${m} (nginx serves it to the proxy once ${m} is active)`;
  }
  const leaf = chain[0] === undefined ? undefined : parse(chain[0]);
  if (!leaf) return r.fail('backend-tls', m, `the certificate ${shown} cannot be parsed`, 'HAProxy refuses the machine', replace(ctx, c));
  const report = c.verify ? r.fail.bind(r) : r.warn.bind(r);
  const refused = c.verify
    ? `HAProxy refuses the connection: ${m} stays DOWN in the app backend${isActive ? ' and users get errors until the observer fails over' : ', so a failover cannot go to it'}`
    : 'HAProxy does not check it (verify none), so it would take traffic from whoever answers on that address';
  const subject = leaf.subject.replaceAll('\n', ', ');
  const intermediates = chain.slice(1).flatMap((p) => parse(p) ?? []);
  if (!chainsTo(leaf, intermediates, c.cas))
    report(
      'backend-tls',
      m,
      `the certificate ${shown} is not issued by the CA in ${c.caFile} on ${proxy}: it is ${subject}, issued by ${leaf.issuer.replaceAll('\n', ', ')}`,
      refused,
      replace(ctx, c),
    );
  if (leaf.checkHost(m) === undefined)
    report(
      'backend-tls',
      m,
      `the certificate ${shown} does not name ${m} (it is ${subject}): HAProxy checks the name with verifyhost ${m}`,
      refused,
      replace(ctx, c),
    );
  const v = validity(leaf, ctx.now);
  if (v.state === 'expired') report('backend-tls', m, `the certificate ${shown} expired on ${v.notAfter.toISOString()}`, refused, replace(ctx, c));
  else if (v.state === 'not-yet')
    report('backend-tls', m, `the certificate ${shown} is not valid before ${v.notBefore.toISOString()}`, refused, replace(ctx, c));
  else if (v.state === 'expiring')
    r.warn('backend-tls', m, `the certificate ${shown} expires in ${v.days} day(s), on ${v.notAfter.toISOString()}`, refused, replace(ctx, c));
}

/** With the cluster CA apply reissues (it replaces a certificate the CA did not issue); with your CA you do. */
function replace(ctx: EvalContext, c: ServerCheck): string {
  const m = c.s.machine;
  if (!c.ownCa) return ctx.fixes.reinstall(m, `${PATHS.nginxTlsCert}, issued again by the cluster CA for ${m},`);
  const t = ctx.cluster.application.backendTls!;
  return `put a certificate your CA issued for ${m} (DNS name ${m}, valid) at ${t.certificate} with its key at ${t.key} on ${m}; then ${ctx.fixes.on(m, ['systemctl', 'try-restart', 'vigil-nginx.service'])}`;
}
