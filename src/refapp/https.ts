/**
 * The reference application's HTTPS port, configured as the seed's application configures its
 * own: a JSON settings file (PATHS.refappSettings, keys REFAPP_HTTPS_KEYS) naming the certificate
 * and key files. Like that application, it starts without HTTPS when the settings or the files
 * are wrong (a key disabled by a leading underscore, a Windows path, a file it may not read, a key
 * that does not belong to the certificate): the HTTP side keeps serving, the HTTPS port does not
 * listen, and the log says why. That is the fault `vigil doctor`'s app-tls check finds. SIGHUP
 * reads the settings again and reopens the port (the unit's `systemctl reload`).
 */
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { jsonValue, lookupKey, parseSettings } from '../facts/app-settings.ts';
import { REFAPP_HTTPS_KEYS } from '../layout/refapp.ts';

export type HttpsPlan = { ok: true; port: number; certPem: string; keyPem: string } | { ok: false; reason: string };

async function readPem(path: string, key: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`${key} names ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

/** What the settings file asks for, with both PEM files read; or why HTTPS stays off. */
export async function planHttps(file: string): Promise<HttpsPlan> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return { ok: false, reason: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
  const parsed = parseSettings(text, 'json', file);
  if (!parsed.ok) return { ok: false, reason: `${file}${parsed.line ? `:${parsed.line}` : ''} is not valid JSON: ${parsed.problem}` };
  const port = parsed.settings.format === 'json' ? jsonValue(parsed.settings.doc, REFAPP_HTTPS_KEYS.port) : undefined;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535)
    return { ok: false, reason: `${file}: ${REFAPP_HTTPS_KEYS.port} is not a port number` };
  const paths: string[] = [];
  for (const key of [REFAPP_HTTPS_KEYS.certificate, REFAPP_HTTPS_KEYS.key]) {
    const l = lookupKey(parsed.settings, key);
    if (l.status !== 'found') return { ok: false, reason: `${file}: ${key} is ${l.status === 'disabled' ? `disabled (written ${l.written})` : l.status}` };
    paths.push(l.value);
  }
  try {
    return { ok: true, port, certPem: await readPem(paths[0]!, REFAPP_HTTPS_KEYS.certificate), keyPem: await readPem(paths[1]!, REFAPP_HTTPS_KEYS.key) };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

/** Opens the HTTPS port for `plan`; rejects when the key does not fit the certificate or the port is taken. */
export async function listenHttps(
  plan: Extract<HttpsPlan, { ok: true }>,
  host: string,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; port: number }> {
  const server = createServer({ cert: plan.certPem, key: plan.keyPem }, handler); // throws on a key that does not match
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(plan.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port };
}
