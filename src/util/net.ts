/** Small network helpers shared by the daemons, the lab, tests and benchmarks. */
import { readFile } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { request, type RequestOptions } from 'node:https';
import { connect as tcpConnect, createServer, type AddressInfo } from 'node:net';

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
  if (url.startsWith('http:')) return plainOk(url, timeoutMs, method);
  try {
    const res = await fetch(url, { method, signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/**
 * Plain HTTP checks on kept-alive connections (the observer's deep check four times a second, the
 * agent's twice): node's own client, not fetch, whose streams and objects per request were a
 * visible share of the idle observer's CPU and garbage (docs/benchmarks.md, the daemons'
 * footprint). A redirect is not followed: the health URL itself must answer 2xx.
 */
const keptAlive = new HttpAgent({ keepAlive: true });

function plainOk(url: string, timeoutMs: number, method: string): Promise<boolean> {
  const signal = AbortSignal.timeout(timeoutMs);
  const attempt = (agent: HttpAgent | false): Promise<boolean | 'again'> =>
    new Promise((resolve) => {
      const req = httpRequest(url, { method, agent, signal }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300));
        res.on('close', () => resolve(false)); // cut off before its end (resolves nothing after 'end')
      });
      // A kept connection the server closed as this request went out fails before any answer:
      // that says nothing of the server, so once more on a new connection.
      req.on('error', (err: NodeJS.ErrnoException) =>
        resolve(req.reusedSocket && !signal.aborted && (err.code === 'ECONNRESET' || err.code === 'EPIPE') ? 'again' : false),
      );
      req.end();
    });
  return attempt(keptAlive).then((r) => (r === 'again' ? attempt(false).then((again) => again === true) : r));
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
  // A fresh connection each time (agent: false): a certificate replaced on the server is seen at once.
  const options = { method, servername: tls.servername, rejectUnauthorized: tls.verify, ...(ca ? { ca } : {}), agent: false as const };
  return httpsText(url, { ...options, signal: AbortSignal.timeout(timeoutMs) }).then(
    (r) => r.status >= 200 && r.status < 300,
    () => false,
  );
}

/** An HTTPS request with node:https's options (CA, agent, server name, signal): the status and the body as text. */
export function httpsText(url: string, options: RequestOptions): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
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

/**
 * True only when a TCP connection to `host:port` is refused (ECONNREFUSED: nothing listens there);
 * false when it opens, times out or fails otherwise, so a slow or unreachable machine never reads
 * as a stopped one.
 */
export function tcpRefused(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = tcpConnect({ host, port });
    const done = (refused: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(refused);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => done(false));
    sock.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED'));
  });
}
