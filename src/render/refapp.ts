/**
 * The reference application's properties file (PATHS.refappConfig), one per app machine.
 *
 * The app reaches PostgreSQL only through the proxy's :5000, which always leads to the current
 * primary, so the file is the same before and after a database failover. The database password
 * is in it (`spring.datasource.password`, the key ServiceOps-style Java apps use, so `vigil
 * doctor` can compare it with the other password files), hence mode 0600.
 *
 * Format: java.util.Properties (`key=value`, `\` escapes, ISO-8859-1 with \uXXXX beyond it), so
 * a Java app could read it as is; formatProperties/parseProperties are the same rules for the
 * TypeScript reference app.
 */
import type { Cluster, Machine, Secrets } from '../config/schema.ts';
import { withRole } from '../config/schema.ts';
import { PATHS, REFAPP_PORT } from '../config/paths.ts';
import { VigilError, problem } from '../util/errors.ts';
import { HEADER, type RenderedFile } from './file.ts';

/** Property keys of the reference app's configuration; the app reads exactly these. */
export const REFAPP_KEYS = {
  node: 'vigil.node',
  dbHost: 'db.host',
  dbPort: 'db.port',
  dbName: 'db.name',
  dbUser: 'db.user',
  dbPassword: 'spring.datasource.password',
  httpHost: 'http.host',
  httpPort: 'http.port',
  attachmentsDir: 'attachments.dir',
} as const;

export type RefappKey = (typeof REFAPP_KEYS)[keyof typeof REFAPP_KEYS];

function escape(s: string, isKey: boolean): string {
  let out = '';
  for (const [i, ch] of [...s].entries()) {
    const code = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\f') out += '\\f';
    // Leading blanks of a value would be dropped by the reader; in keys blanks end the key.
    else if (ch === ' ' && (isKey || i === 0)) out += '\\ ';
    // = and : end a key; # and ! start a comment at the beginning of a line.
    else if ('=:#!'.includes(ch) && (isKey || i === 0)) out += `\\${ch}`;
    else if (code < 0x20 || code > 0x7e) {
      // Outside printable ASCII: \uXXXX (UTF-16 code units, as Properties.store writes them).
      for (const unit of ch.split('')) out += `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`;
    } else out += ch;
  }
  return out;
}

export function formatProperties(props: Record<string, string>, comment = HEADER): string {
  const lines = [`# ${comment}`, ...Object.entries(props).map(([k, v]) => `${escape(k, true)}=${escape(v, false)}`)];
  return lines.join('\n') + '\n';
}

/** Reads a properties file (the subset of java.util.Properties that formatProperties writes, plus continuation lines). */
export function parseProperties(text: string, source = 'properties'): Record<string, string> {
  const out: Record<string, string> = {};
  const physical = text.split(/\r\n|\r|\n/);
  for (let i = 0; i < physical.length; i++) {
    let line = physical[i]!.replace(/^[ \t\f]+/, '');
    if (line === '' || line.startsWith('#') || line.startsWith('!')) continue;
    // A line ending in an odd number of backslashes continues on the next one.
    while (/(^|[^\\])(\\\\)*\\$/.test(line) && i + 1 < physical.length) {
      line = line.slice(0, -1) + physical[++i]!.replace(/^[ \t\f]+/, '');
    }
    let k = 0;
    let key = '';
    for (; k < line.length; k++) {
      const ch = line[k]!;
      if (ch === '\\') key += line[k] + (line[++k] ?? '');
      else if ('=: \t\f'.includes(ch)) break;
      else key += ch;
    }
    let rest = line.slice(k).replace(/^[ \t\f]*/, '');
    if (rest.startsWith('=') || rest.startsWith(':')) rest = rest.slice(1).replace(/^[ \t\f]*/, '');
    out[unescape(key, source, i + 1)] = unescape(rest, source, i + 1);
  }
  return out;
}

function unescape(s: string, source: string, line: number): string {
  return s.replace(/\\(u([0-9a-fA-F]{4})|u.{0,4}|.)/gs, (_m, esc: string, hex: string | undefined) => {
    if (hex) return String.fromCharCode(Number.parseInt(hex, 16));
    if (esc.startsWith('u')) throw new VigilError('CONFIG_INVALID', [problem(`${source}:${line}`, 'malformed \\uXXXX escape', 'write four hex digits after \\u')]);
    return { n: '\n', r: '\r', t: '\t', f: '\f' }[esc] ?? esc;
  });
}

export function refappProperties(cluster: Cluster, secrets: Secrets, machine: Machine): Record<RefappKey, string> {
  // The first proxy machine; with two observers sharing a floating IP this becomes that IP.
  const proxy = withRole(cluster, 'proxy')[0];
  if (!proxy) {
    throw new VigilError('RENDER', [problem(`${cluster.source} machines`, 'no machine has the proxy role, so the app has no database address', 'give one machine the roles etcd, proxy, observer')]);
  }
  return {
    [REFAPP_KEYS.node]: machine.name,
    [REFAPP_KEYS.dbHost]: proxy.address,
    [REFAPP_KEYS.dbPort]: String(cluster.proxy.postgresPort),
    [REFAPP_KEYS.dbName]: cluster.database.appDatabase,
    [REFAPP_KEYS.dbUser]: cluster.database.appUser,
    [REFAPP_KEYS.dbPassword]: secrets.appDbPassword,
    // Loopback only: users reach the app through HAProxy and nginx, never directly.
    [REFAPP_KEYS.httpHost]: '127.0.0.1',
    [REFAPP_KEYS.httpPort]: String(REFAPP_PORT),
    [REFAPP_KEYS.attachmentsDir]: PATHS.refappAttachments,
  };
}

export function renderRefapp(cluster: Cluster, secrets: Secrets, machine: Machine): RenderedFile {
  return {
    machine: machine.name,
    path: PATHS.refappConfig,
    mode: 0o600, // holds the database password
    // root: the reference app runs as root in the lab; a real app's unit would own its copy.
    owner: 'root:root',
    content: formatProperties(refappProperties(cluster, secrets, machine)),
  };
}
