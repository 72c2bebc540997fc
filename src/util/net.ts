/** Small network helpers shared by the daemons, the lab, tests and benchmarks. */
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';

/** How an HTTPS URL's certificate is checked: against the CA in `caFile`, for the DNS name `servername`. */
export interface TlsCheck {
  caFile: string;
  servername: string;
  /** false: any certificate is accepted (only where the operator wrote it). */
  verify: boolean;
}

/**
 * True when `url` answers 2xx within `timeoutMs`; false on any error or other status. With `tls`,
 * an https URL whose certificate does not chain to the CA or does not name `servername` fails.
 */
export async function httpOk(url: string, timeoutMs = 1000, method = 'GET', tls?: TlsCheck): Promise<boolean> {
  if (tls) return httpsOk(url, timeoutMs, method, tls);
  try {
    const res = await fetch(url, { method, signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

async function httpsOk(url: string, timeoutMs: number, method: string, tls: TlsCheck): Promise<boolean> {
  let ca: Buffer | undefined;
  if (tls.verify) {
    try {
      ca = await readFile(tls.caFile);
    } catch {
      return false;
    }
  }
  return new Promise((resolve) => {
    const req = request(url, {
      method,
      servername: tls.servername,
      rejectUnauthorized: tls.verify,
      ...(ca ? { ca } : {}),
      signal: AbortSignal.timeout(timeoutMs),
      // A fresh connection each time: a certificate replaced on the server is seen at once.
      agent: false,
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300));
      res.on('error', () => resolve(false));
    });
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** A TCP port free right now on `host` (the kernel picks it; it may be taken again before use). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
