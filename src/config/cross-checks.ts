/**
 * From the validated file to the `Cluster` every module reads (presets and defaults applied),
 * and the rules that span several fields. Each rule yields problems located by the Locator, so
 * they read like schema errors: FILE:LINE field, what is wrong, what to write instead.
 */
import { problem, type Problem } from '../util/errors.ts';
import { PRESET_ROLES, ROLES, runsAgent, withRole, type Cluster, type ClusterFile, type Machine, type Role } from './schema.ts';

type Path = readonly PropertyKey[];

/** Finds where a field sits in the YAML source, for messages. */
export interface Locator {
  /** `FILE:LINE dotted.path`; the line is the nearest existing node's when the field is missing. */
  at(path: Path): string;
  /** Whether the field is written in the file (rather than coming from a default or preset). */
  has(path: Path): boolean;
}

export function dotted(path: Path): string {
  return path.reduce<string>((s, seg) => {
    if (typeof seg === 'number') return `${s}[${seg}]`;
    return s ? `${s}.${String(seg)}` : String(seg);
  }, '');
}

/** Edit distance counting a swap of two neighbours as one edit: the usual typo (`rolse`). */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The allowed word a typo most likely meant, if one is close enough. */
export function closest(word: string, allowed: readonly string[]): string | undefined {
  let best: { s: string; d: number } | undefined;
  for (const s of allowed) {
    const d = distance(word.toLowerCase(), s.toLowerCase());
    if (!best || d < best.d) best = { s, d };
  }
  return best && best.d <= Math.max(1, Math.floor(word.length / 3)) ? best.s : undefined;
}

const presetOf = (c: { topology: ClusterFile['topology'] }): Record<string, Role[]> => (c.topology === 'custom' ? {} : PRESET_ROLES[c.topology]);

/** Applies the preset's roles to machines that leave `roles` out; keeps the file's order. */
export function resolveCluster(file: ClusterFile, source: string): Cluster {
  const preset = presetOf(file);
  const machines: Machine[] = Object.entries(file.machines).map(([name, m]) => ({
    name,
    address: m.address,
    roles: [...new Set(m.roles ?? preset[name] ?? [])],
    sshUser: m.sshUser,
    sshPort: m.sshPort,
  }));
  return { ...file, machines, source };
}

const presetList = Object.entries(PRESET_ROLES)
  .map(([t, ms]) => `${t}: ${Object.keys(ms).join(', ')}`)
  .join('; ');

/** The rules below, in words, for docs/config-reference.md. */
export const CROSS_FIELD_RULES: readonly string[] = [
  `A preset topology must list every machine it names (${presetList}); those machines may leave \`roles\` out.`,
  'Every machine a preset does not name needs `roles`.',
  'There are 1, 3, 5 or 7 machines with the role etcd: an even count survives no more failures than one member fewer, and more than 7 slows every write.',
  'No two machines have the same address, and `proxy.virtualAddress` is none of theirs.',
  'At least one machine has each of the roles etcd, proxy, observer and db, and at least two have the role app.',
  "`timers.loopWaitSeconds + 2 × timers.retryTimeoutSeconds` must not exceed `timers.ttlSeconds` (Patroni's rule: a primary retrying etcd must still renew its leader lock in time).",
  'Ports must not collide on a machine that runs several roles: SSH (`sshPort`), etcd (2379, 2380), proxy (`proxy.httpPort`, `proxy.httpsPort` when `proxy.tlsBundle` is set, `proxy.postgresPort`, `proxy.statsPort`), app (`application.port`, or `application.backendTls.port` when set), db (`database.port`, `database.patroniPort`), and with `metrics.enabled` the agent (`metrics.agentPort`, beside the agent API on 7710) and the observer (`metrics.observerPort`), and with `dashboard.enabled` the dashboard (`dashboard.port`) on the observer machines.',
  "Every `application.tlsEndpoints[].service` is the `name` of one of `application.services`; its `port` counts among the app machines' ports above.",
  '`application.backendTls.certificate` and `application.backendTls.key` are given exactly when `application.backendTls.ca` is your CA file rather than `cluster`.',
  'A service with `runsOn: every` needs `application.activation`: a warm service must learn which machine is active; service names are unique.',
  '`proxy.tlsCertificate` and `proxy.tlsKey` go together; they and `proxy.tlsDnsNames` need `proxy.tlsBundle`; `proxy.tlsDnsNames` is for the certificate issued by the cluster CA, so not with `proxy.tlsCertificate`.',
];

export function checkCluster(c: Cluster, file: ClusterFile, loc: Locator): Problem[] {
  return [
    ...checkPreset(c, file, loc),
    ...checkEtcdCount(c, loc),
    ...checkAddresses(c, loc),
    ...checkCoverage(c, loc),
    ...checkTimers(c, loc),
    ...checkPorts(c, loc),
    ...checkTls(c, loc),
    ...checkTlsEndpoints(c, loc),
    ...checkBackendTls(c, loc),
    ...checkPlacement(c, loc),
  ];
}

/** Who provides nginx's certificate follows from `ca`: apply with the cluster CA, the operator with their own. */
function checkBackendTls(c: Cluster, loc: Locator): Problem[] {
  const t = c.application.backendTls;
  if (!t) return [];
  const at = (field: string) => loc.at(['application', 'backendTls', field]);
  const given = (['certificate', 'key'] as const).filter((f) => t[f] !== undefined);
  if (t.ca === 'cluster')
    return given.map((f) =>
      problem(
        at(f),
        `application.backendTls.${f} is set while ca is \`cluster\`: apply issues nginx's certificate and key from the cluster CA itself`,
        `remove ${f}, or set ca to your CA's certificate file (relative to ${c.source}) to use your own certificates`,
      ),
    );
  return (['certificate', 'key'] as const)
    .filter((f) => t[f] === undefined)
    .map((f) =>
      problem(
        at('ca'),
        `application.backendTls.ca is your CA (${t.ca}) but application.backendTls.${f} is not set: nginx has no ${f === 'key' ? 'private key' : 'certificate'} to serve`,
        `add \`${f}: /etc/ssl/servicedesk/app.${f === 'key' ? 'key' : 'pem'}\` (the same path on every app machine, where you put the ${f === 'key' ? 'key' : 'certificate your CA issued naming the machine'}), or write \`ca: cluster\` to have apply issue them`,
      ),
    );
}

/** Settings that work but weaken the cluster: `vigil validate` and `vigil doctor` say so. */
export function clusterWarnings(c: Cluster, loc?: Locator): Problem[] {
  const t = c.application.backendTls;
  if (!t || t.verify) return [];
  return [
    problem(
      loc?.at(['application', 'backendTls', 'verify']) ?? `${c.source} application.backendTls.verify`,
      "application.backendTls.verify is false (HAProxy's `verify none`): the proxy, the agents and the observer accept any certificate from the app machines, so whoever answers on an app machine's address gets the users' traffic and passes the health checks",
      'remove `verify: false` (the cluster CA is used by default) or give your CA as application.backendTls.ca',
    ),
  ];
}

/** Warm services need the activation hook; names are unique (status and doctor report by name). */
function checkPlacement(c: Cluster, loc: Locator): Problem[] {
  const out: Problem[] = [];
  const seen = new Set<string>();
  c.application.services.forEach((s, i) => {
    if (seen.has(s.name))
      out.push(
        problem(loc.at(['application', 'services', i, 'name']), `\`${s.name}\` names two services`, 'give each service of application.services its own name'),
      );
    seen.add(s.name);
    if (s.runsOn === 'every' && !c.application.activation)
      out.push(
        problem(
          loc.at(['application', 'services', i, 'runsOn']),
          `\`${s.name}\` runs on every app machine, but application.activation is not set: it could not tell the active machine from a standby`,
          'add application.activation with the url, command or file of its activation hook (docs/application-contract.md), or set runsOn: active',
        ),
      );
  });
  return out;
}

/** An application HTTPS endpoint belongs to one of the application's services. */
function checkTlsEndpoints(c: Cluster, loc: Locator): Problem[] {
  const names = c.application.services.map((s) => s.name);
  return c.application.tlsEndpoints.flatMap((e, i) => {
    if (names.includes(e.service)) return [];
    const guess = closest(e.service, names);
    return [
      problem(
        loc.at(['application', 'tlsEndpoints', i, 'service']),
        `\`${e.service}\` is not a service of application.services (${names.join(', ') || 'none'})`,
        guess
          ? `did you mean \`${guess}\`? Or add the service to application.services`
          : `use one of ${names.join(', ')}, or add the service to application.services`,
      ),
    ];
  });
}

/** The certificate settings of :443 only make sense together. */
function checkTls(c: Cluster, loc: Locator): Problem[] {
  const p = c.proxy;
  const at = (field: string) => loc.at(['proxy', field]);
  const out: Problem[] = [];
  const given = (['tlsCertificate', 'tlsKey'] as const).filter((f) => p[f] !== undefined);
  if (given.length === 1) {
    const [has, lacks] = given[0] === 'tlsCertificate' ? ['tlsCertificate', 'tlsKey'] : ['tlsKey', 'tlsCertificate'];
    out.push(
      problem(
        at(has),
        `proxy.${has} is set without proxy.${lacks}: apply needs both to build the bundle`,
        `add \`${lacks}: <file>\` under proxy, or remove \`${has}\` to have apply issue the certificate from the cluster CA`,
      ),
    );
  }
  const uses = [...given, ...(p.tlsDnsNames.length ? ['tlsDnsNames'] : [])];
  if (p.tlsBundle === undefined && uses.length)
    out.push(
      problem(
        at(uses[0]!),
        `proxy.${uses[0]} is set but proxy.tlsBundle is not, so :443 is not served`,
        `add \`tlsBundle: /etc/vigil/tls/proxy.pem\` under proxy (where HAProxy reads the bundle on the proxy machines)`,
      ),
    );
  if (p.tlsCertificate !== undefined && p.tlsDnsNames.length)
    out.push(
      problem(
        at('tlsDnsNames'),
        'proxy.tlsDnsNames names the certificate apply issues from the cluster CA; with proxy.tlsCertificate the names are those your CA put in it',
        'remove tlsDnsNames, or remove tlsCertificate and tlsKey to use the cluster CA',
      ),
    );
  return out;
}

function checkPreset(c: Cluster, file: ClusterFile, loc: Locator): Problem[] {
  const preset = presetOf(c);
  const names = Object.keys(preset);
  const missing = names
    .filter((name) => !(name in file.machines))
    .map((name) =>
      problem(
        loc.at(['machines', name]),
        `topology ${c.topology} needs a machine named \`${name}\` (roles ${preset[name]!.join(', ')}) and there is none`,
        `add \`${name}: { address: <its IPv4 address> }\` under machines, or set \`topology: custom\` and give every machine its roles`,
      ),
    );
  const roleless = c.machines
    .filter((m) => m.roles.length === 0)
    .map((m) => {
      const guess = closest(
        m.name,
        names.filter((n) => !(n in file.machines)),
      );
      const named = c.topology === 'custom' ? 'topology custom names no machines' : `topology ${c.topology} names only ${names.join(', ')}`;
      const fix = `add \`roles: [...]\` with some of ${ROLES.join(', ')}${guess ? `, or rename it to \`${guess}\` to take the preset's roles` : ''}`;
      return problem(loc.at(['machines', m.name, 'roles']), `missing role: machine \`${m.name}\` has no roles and ${named}`, fix);
    });
  return [...missing, ...roleless];
}

function checkEtcdCount(c: Cluster, loc: Locator): Problem[] {
  const etcd = withRole(c, 'etcd');
  const n = etcd.length;
  if (n === 0 || [1, 3, 5, 7].includes(n)) return []; // none at all is checkCoverage's
  const lastOne = etcd[n - 1]!;
  const names = etcd.map((m) => m.name).join(', ');
  const fix =
    n > 7
      ? `remove \`etcd\` from the roles of ${n - 7} machine(s), e.g. ${etcd
          .slice(7)
          .map((m) => m.name)
          .join(', ')}: 7 members is the most`
      : `remove \`etcd\` from the roles of \`${lastOne.name}\` (${n - 1} member${n - 1 === 1 ? '' : 's'}) or add it to one more machine (${n + 1} members)`;
  const why = n > 7 ? 'more than 7 members slows every write' : 'an even count survives no more failures than one member fewer';
  return [problem(loc.at(['machines', lastOne.name, 'roles']), `${n} etcd members (${names}): etcd needs 1, 3, 5 or 7; ${why}`, fix)];
}

function checkAddresses(c: Cluster, loc: Locator): Problem[] {
  const byAddress = new Map<string, string>();
  const out: Problem[] = [];
  for (const m of c.machines) {
    const first = byAddress.get(m.address);
    if (first === undefined) byAddress.set(m.address, m.name);
    else
      out.push(
        problem(
          loc.at(['machines', m.name, 'address']),
          `machines \`${first}\` and \`${m.name}\` both have address ${m.address}`,
          `give \`${m.name}\` its own address, one the other machines reach it on`,
        ),
      );
  }
  const vip = c.proxy.virtualAddress;
  const owner = vip === undefined ? undefined : byAddress.get(vip);
  if (owner !== undefined)
    out.push(
      problem(
        loc.at(['proxy', 'virtualAddress']),
        `proxy.virtualAddress ${vip} is the address of machine \`${owner}\`: keepalived would take it from that machine and give it to another`,
        "choose a free address on the proxy machines' subnet, one no machine or router uses",
      ),
    );
  return out;
}

const COVERAGE: readonly [Role, number, string][] = [
  ['etcd', 1, 'add `etcd` to the roles of the observer machine (as in pair: `roles: [etcd, proxy, observer]`)'],
  ['proxy', 1, 'add `proxy` to the roles of the observer machine (`roles: [etcd, proxy, observer]`), or add a machine with `roles: [proxy]`'],
  ['observer', 1, 'add `observer` to the roles of a machine that runs neither app nor db, usually the one with etcd and proxy'],
  ['db', 1, 'add `db` to the roles of the app machines (as pair does: `roles: [app, db]`), or add database machines with `roles: [db]`'],
  ['app', 2, 'add a second application machine with `roles: [app]` (or `roles: [app, db]` as in pair)'],
];

function checkCoverage(c: Cluster, loc: Locator): Problem[] {
  return COVERAGE.flatMap(([role, min, fix]) => {
    const have = withRole(c, role);
    if (have.length >= min) return [];
    const message =
      have.length === 0
        ? `missing role: no machine has the role ${role}`
        : `missing role: only ${have.map((m) => `\`${m.name}\``).join(', ')} has the role ${role}; failover needs at least ${min}`;
    return [problem(loc.at(['machines']), message, fix)];
  });
}

function checkTimers(c: Cluster, loc: Locator): Problem[] {
  const { ttlSeconds: ttl, loopWaitSeconds: loop, retryTimeoutSeconds: retry } = c.timers;
  const need = loop + 2 * retry;
  if (need <= ttl) return [];
  // Blame the field the operator wrote, so the line points at their edit, not at a default.
  const field = (['ttlSeconds', 'retryTimeoutSeconds', 'loopWaitSeconds'] as const).find((f) => loc.has(['timers', f])) ?? 'ttlSeconds';
  const maxRetry = Math.floor((ttl - loop) / 2);
  const fix = `set \`ttlSeconds: ${need}\`${maxRetry >= 1 ? ` or \`retryTimeoutSeconds: ${maxRetry}\`` : ''}`;
  return [
    problem(
      loc.at(['timers', field]),
      `loopWaitSeconds (${loop}) + 2 × retryTimeoutSeconds (${retry}) = ${need} exceeds ttlSeconds (${ttl}): the primary could lose its leader lock while still retrying etcd, a needless failover`,
      fix,
    ),
  ];
}

interface PortUse {
  port: number;
  /** The config field that sets it; empty for ports Vigil fixes (etcd's). */
  field: Path;
  label: string;
}

function portsOf(c: Cluster, m: Machine): PortUse[] {
  const f = (port: number, ...field: PropertyKey[]): PortUse => ({ port, field, label: dotted(field) });
  const uses = [f(m.sshPort, 'machines', m.name, 'sshPort')];
  if (m.roles.includes('etcd')) uses.push({ port: 2379, field: [], label: 'etcd client port' }, { port: 2380, field: [], label: 'etcd peer port' });
  if (m.roles.includes('proxy')) {
    const p = c.proxy;
    uses.push(f(p.httpPort, 'proxy', 'httpPort'), f(p.postgresPort, 'proxy', 'postgresPort'), f(p.statsPort, 'proxy', 'statsPort'));
    if (p.tlsBundle !== undefined) uses.push(f(p.httpsPort, 'proxy', 'httpsPort')); // :443 is served only with a bundle
  }
  if (m.roles.includes('app')) {
    // nginx serves either plain HTTP on application.port or HTTPS on backendTls.port (src/render/nginx.ts).
    const bt = c.application.backendTls;
    uses.push(bt ? f(bt.port, 'application', 'backendTls', 'port') : f(c.application.port, 'application', 'port'));
    c.application.tlsEndpoints.forEach((e, i) => uses.push(f(e.port, 'application', 'tlsEndpoints', i, 'port')));
  }
  if (m.roles.includes('db')) uses.push(f(c.database.port, 'database', 'port'), f(c.database.patroniPort, 'database', 'patroniPort'));
  if (c.metrics.enabled) {
    if (runsAgent(c, m)) uses.push(f(c.metrics.agentPort, 'metrics', 'agentPort'), { port: 7710, field: [], label: 'agent API port' });
    if (m.roles.includes('observer')) uses.push(f(c.metrics.observerPort, 'metrics', 'observerPort'));
  }
  if (c.dashboard.enabled && m.roles.includes('observer')) uses.push(f(c.dashboard.port, 'dashboard', 'port'));
  return uses;
}

function checkPorts(c: Cluster, loc: Locator): Problem[] {
  // One problem per pair of fields, naming every machine where they meet.
  const clashes = new Map<string, { a: PortUse; b: PortUse; machines: Machine[] }>();
  for (const m of c.machines) {
    const uses = portsOf(c, m);
    uses.forEach((b, i) => {
      const a = uses.slice(0, i).find((u) => u.port === b.port);
      if (!a) return;
      const key = `${a.label}|${b.label}`;
      const clash = clashes.get(key) ?? { a, b, machines: [] };
      clash.machines.push(m);
      clashes.set(key, clash);
    });
  }
  return [...clashes.values()].map(({ a, b, machines }) => {
    // Blame a field that can change, preferring one the operator wrote.
    const blame = b.field.length === 0 || (a.field.length > 0 && loc.has(a.field) && !loc.has(b.field)) ? a : b;
    const taken = new Set(machines.flatMap((m) => portsOf(c, m).map((u) => u.port)));
    let free = blame.port + 1;
    while (taken.has(free)) free++;
    const on = machines.map((m) => `\`${m.name}\` (${m.roles.join(', ')})`).join(', ');
    return problem(
      loc.at(blame.field),
      `${a.label} and ${b.label} are both ${a.port} on ${machines.length > 1 ? 'machines' : 'machine'} ${on}`,
      `change ${blame.label} to a free port, e.g. ${free}`,
    );
  });
}
