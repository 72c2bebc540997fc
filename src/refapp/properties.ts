/**
 * The reference application's configuration: a Java properties file (the format ServiceOps
 * itself reads, parsed by src/util/properties.ts, so this app and a Spring application reading
 * the same file see the same password), turned into a typed `RefappConfig`.
 *
 * Error messages name the file, line and key, never a value: the file holds the DB password.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { PATHS } from '../layout/paths.ts';
import { REFAPP_ANALYTICS_PORT, REFAPP_CONTROL_PORT, REFAPP_PORT } from '../layout/network.ts';
import { REFAPP_DEFAULT_STARTUP_SECONDS, REFAPP_KEYS } from '../layout/refapp.ts'; // the keys its generator writes (src/render/refapp.ts)
import { VigilError, problem, type Problem } from '../util/errors.ts';
import { parseProperties, type Properties } from '../util/properties.ts';

export interface RefappConfig {
  /** Name of the machine this instance runs on, reported by every answer (`vigil.node`). */
  node: string;
  db: { host: string; port: number; name: string; user: string; password: string };
  /** `port: 0` picks a free port (tests); the properties file must name a real one. */
  http: { host: string; port: number };
  attachmentsDir: string;
  /** Milliseconds after start before /health answers 200 and the background work may run. */
  startupMs: number;
  /** Loopback port of the activation endpoint (`port: 0` picks a free one in tests). */
  controlPort: number;
  /** Loopback port of the analytics service (`vigil-refapp --analytics`; `port: 0` picks a free one in tests). */
  analyticsPort: number;
  /** Its HTTPS settings file (src/refapp/https.ts); absent: no HTTPS port. */
  httpsSettings?: string;
}

const REQUIRED = ['node', 'dbHost', 'dbPort', 'dbName', 'dbUser', 'dbPassword'] as const;

/** Reads and validates the app's properties file. */
export async function loadRefappConfig(file: string = PATHS.refappConfig): Promise<RefappConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new VigilError('CONFIG_READ', [problem(file, `cannot read the file (${reason})`, 'check the path and that this user may read it')], { cause: err });
  }
  return refappConfigFrom(parseProperties(text, file), file);
}

/** Builds the typed config; every missing or invalid key is reported at once, in file order. */
export function refappConfigFrom(props: Properties, file: string): RefappConfig {
  const found: { line: number; problem: Problem }[] = [];
  const report = (k: string, message: string, fix: string) => {
    const line = props.get(k)?.line;
    found.push({ line: line ?? 0, problem: problem(line === undefined ? `${file} ${k}` : `${file}:${line} ${k}`, message, fix) });
  };
  for (const name of REQUIRED) {
    const key = REFAPP_KEYS[name];
    if (!props.has(key)) report(key, 'required key is missing', `add a line ${key}=<value>`);
  }
  // Trailing spaces are kept in the password (Java keeps them) but are a typo anywhere else.
  const text = (k: string, dflt = '') => props.get(k)?.value.trim() ?? dflt;
  const nonEmpty = (k: string) => {
    if (props.has(k) && text(k) === '') report(k, 'must not be empty', `give ${k} a value`);
    return text(k);
  };
  const port = (k: string, dflt: number) => {
    const raw = text(k, String(dflt));
    if (/^\d{1,5}$/.test(raw) && Number(raw) >= 1 && Number(raw) <= 65535) return Number(raw);
    if (props.has(k)) report(k, 'not a port number', `write a number from 1 to 65535, e.g. ${k}=${dflt}`);
    return dflt;
  };
  const seconds = (k: string, dflt: number) => {
    const raw = text(k, String(dflt));
    if (/^\d{1,5}$/.test(raw)) return Number(raw);
    report(k, 'not a whole number of seconds', `write a number from 0 to 99999, e.g. ${k}=${dflt}`);
    return dflt;
  };
  const password = props.get(REFAPP_KEYS.dbPassword)?.value ?? '';
  if (props.has(REFAPP_KEYS.dbPassword) && password === '') {
    report(REFAPP_KEYS.dbPassword, 'must not be empty', 'set the database password the cluster secrets file holds');
  }
  const attachmentsDir = text(REFAPP_KEYS.attachmentsDir, PATHS.refappAttachments);
  if (!isAbsolute(attachmentsDir)) {
    report(REFAPP_KEYS.attachmentsDir, 'must be an absolute path', `e.g. ${REFAPP_KEYS.attachmentsDir}=${PATHS.refappAttachments}`);
  }
  const config: RefappConfig = {
    node: nonEmpty(REFAPP_KEYS.node),
    db: {
      host: nonEmpty(REFAPP_KEYS.dbHost),
      port: port(REFAPP_KEYS.dbPort, 5000),
      name: nonEmpty(REFAPP_KEYS.dbName),
      user: nonEmpty(REFAPP_KEYS.dbUser),
      password,
    },
    http: { host: nonEmpty(REFAPP_KEYS.httpHost) || '127.0.0.1', port: port(REFAPP_KEYS.httpPort, REFAPP_PORT) },
    attachmentsDir,
    startupMs: seconds(REFAPP_KEYS.startupSeconds, REFAPP_DEFAULT_STARTUP_SECONDS) * 1000,
    controlPort: port(REFAPP_KEYS.controlPort, REFAPP_CONTROL_PORT),
    analyticsPort: port(REFAPP_KEYS.analyticsPort, REFAPP_ANALYTICS_PORT),
  };
  const https = text(REFAPP_KEYS.httpsSettings);
  if (https) {
    if (isAbsolute(https)) config.httpsSettings = https;
    else report(REFAPP_KEYS.httpsSettings, 'must be an absolute path', `e.g. ${REFAPP_KEYS.httpsSettings}=${PATHS.refappSettings}`);
  }
  if (found.length > 0) {
    // Missing keys (line 0) first, then the rest in the order the file has them.
    throw new VigilError(
      'CONFIG_INVALID',
      found.sort((a, b) => a.line - b.line).map((f) => f.problem),
    );
  }
  return config;
}
