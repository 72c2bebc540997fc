/**
 * HTTPS with mutual TLS under the cluster CA, for the node agent's API and the observer's calls
 * to it. Both sides trust the cluster CA and nothing else (no system roots): a certificate from a
 * public CA, or from another Vigil cluster, is refused during the handshake, before any handler
 * runs. The server hands the handler the peer's common name so write endpoints can authorise by
 * machine name.
 *
 * The extended key usage is enforced by OpenSSL on both sides (a server-only certificate cannot
 * be used as a client, and a client-only one cannot serve).
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { createServer, request, type RequestOptions, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { createSecureContext, type ConnectionOptions, type SecureContext, type TLSSocket } from 'node:tls';
import type { CodedError, ErrorCode } from '../util/errors.ts';

/** PEM strings: the cluster CA certificate, this side's certificate and its private key. */
export interface MtlsIdentity {
  ca: string;
  cert: string;
  key: string;
}

/** Who is on the other end, as proved by a certificate the cluster CA signed. */
export interface PeerInfo {
  commonName: string;
  fingerprint256: string;
}

export type MtlsHandler = (req: IncomingMessage, res: ServerResponse, peer: PeerInfo) => void | Promise<void>;

export interface MtlsServerOptions extends MtlsIdentity {
  handler: MtlsHandler;
  host: string;
  port: number;
  /**
   * A handshake OpenSSL refused (no client certificate, protocol errors): for the daemon's log.
   * A certificate that fails verification (another CA, wrong usage, expired) is dropped by node
   * after the handshake without any event, so it is not reported here; the client's TlsError
   * says it.
   */
  onTlsError?: (err: Error, remoteAddress: string | undefined) => void;
  /** A handler threw; the client got a 500 without the details. */
  onHandlerError?: (err: unknown, req: IncomingMessage) => void;
}

export interface MtlsServer {
  server: Server;
  host: string;
  /** The port actually bound (useful with port 0). */
  port: number;
  /**
   * Stops listening and resolves once every connection is gone: idle ones (keep-alive) are
   * closed at once, requests under way get `graceMs` (default 1000) to finish, and whatever is
   * left then (a slow handler, a client stuck in the TLS handshake) is destroyed. It never waits
   * on a client.
   */
  close(graceMs?: number): Promise<void>;
}

/** TLS settings both sides share: TLS 1.2 at least, and the cluster CA as the only trust root. */
const tlsBase = (id: MtlsIdentity) => ({ ca: [id.ca], cert: id.cert, key: id.key, minVersion: 'TLSv1.2' as const });

/**
 * Starts an HTTPS server that requires a client certificate chaining to the cluster CA and
 * resolves once it listens.
 */
export async function createMtlsServer(opts: MtlsServerOptions): Promise<MtlsServer> {
  const server = createServer(
    {
      ...tlsBase(opts),
      requestCert: true,
      rejectUnauthorized: true,
      // Bound slow or idle clients: the API answers small requests quickly.
      requestTimeout: 30_000,
      headersTimeout: 10_000,
    },
    (req, res) => void serve(opts, req, res),
  );
  server.keepAliveTimeout = 5_000;
  server.on('tlsClientError', (err, socket) => opts.onTlsError?.(err, socket.remoteAddress));
  // Every TCP connection, from accept on: the HTTP layer's own list (closeAllConnections) holds
  // a connection only once its TLS handshake is done, and server.close() waits for all of them
  // (a stalled handshake for up to handshakeTimeout, 120 s).
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    host: opts.host,
    port,
    close: (graceMs = 1000) =>
      new Promise<void>((resolve, reject) => {
        // A request that finishes in the grace period leaves an idle keep-alive connection: closed too.
        const idle = setInterval(() => server.closeIdleConnections(), 50);
        const force = setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, graceMs);
        server.close((err) => {
          clearInterval(idle);
          clearTimeout(force);
          if (err) reject(err);
          else resolve();
        });
        server.closeIdleConnections();
      }),
  };
}

async function serve(opts: MtlsServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const socket = req.socket as TLSSocket;
  // rejectUnauthorized already ended unverified handshakes; checked again so that a change of
  // options can never let an unauthenticated request reach a handler.
  const cert = socket.authorized ? socket.getPeerCertificate() : undefined;
  const cn = cert?.subject?.CN;
  if (cert === undefined || typeof cn !== 'string' || cn === '') {
    res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'a client certificate from the cluster CA is required' }));
    return;
  }
  try {
    await opts.handler(req, res, { commonName: cn, fingerprint256: cert.fingerprint256 });
  } catch (err) {
    opts.onHandlerError?.(err, req);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'internal error' }));
    else res.destroy();
  }
}

/**
 * Node's TLS server checks a client certificate in JavaScript after the handshake completes and
 * then just destroys the socket, without a TLS alert (only a missing certificate gets one, from
 * OpenSSL). So the client sees its handshake succeed and then a reset or a close before any
 * response: on a fresh connection (we never reuse one) that is the signature of a refused
 * certificate, and is reported as such rather than as a flaky network.
 */
export const PEER_CLOSED_AFTER_HANDSHAKE = 'PEER_CLOSED_AFTER_HANDSHAKE';

export type NetErrorKind = 'tls' | 'refused' | 'timeout' | 'aborted' | 'network';

const NET_CODES = { tls: 'NET_TLS', refused: 'NET_REFUSED', timeout: 'NET_TIMEOUT', aborted: 'NET_ABORTED', network: 'NET_FAILED' } as const satisfies Record<
  NetErrorKind,
  ErrorCode
>;

/**
 * A request that did not get an HTTP response. `kind` tells the caller what to do: 'tls' needs a
 * person (certificates), 'refused' means nothing listens (daemon down), 'timeout' means no answer
 * in time (machine or network gone), 'network' is any other transport failure.
 */
export class NetError extends Error implements CodedError {
  /** The registry's code (docs/errors.md), one per kind. */
  readonly code: ErrorCode;

  constructor(
    readonly kind: NetErrorKind,
    readonly url: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'NetError';
    this.code = NET_CODES[kind];
  }

  /** Whether trying again later may help; a certificate problem does not go away by itself. */
  get retryable(): boolean {
    return this.kind !== 'tls' && this.kind !== 'aborted';
  }
}

/** The TLS handshake failed: a certificate from another CA, none at all, wrong usage or name. */
export class TlsError extends NetError {
  /** The OpenSSL or node code, e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE, ERR_SSL_TLSV1_ALERT_UNKNOWN_CA. */
  readonly tlsCode: string;
  constructor(url: string, code: string, cause: unknown) {
    const why =
      code === PEER_CLOSED_AFTER_HANDSHAKE
        ? `${url} closed the connection right after the TLS handshake, before answering: it most likely refused this side's certificate`
        : `TLS with ${url} failed (${code})`;
    super('tls', url, `${why}; both sides must use certificates issued by this cluster's CA, for their own address and use (server/client)`, { cause });
    this.name = 'TlsError';
    this.tlsCode = code;
  }
}

export class ConnectionRefusedError extends NetError {
  constructor(url: string, cause: unknown) {
    super('refused', url, `${url} refused the connection: nothing listens there (is the daemon running?)`, { cause });
    this.name = 'ConnectionRefusedError';
  }
}

export class TimeoutError extends NetError {
  constructor(url: string, timeoutMs: number) {
    super('timeout', url, `${url} did not answer within ${timeoutMs} ms`);
    this.name = 'TimeoutError';
  }
}

// Node's certificate verification codes (from OpenSSL's X509_V_ERR_*) and its own TLS codes.
const CERT_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_TLS_HANDSHAKE_TIMEOUT',
]);

function classify(err: unknown, url: string, afterHandshake = false): NetError {
  if (err instanceof NetError) return err;
  const code = (err as { code?: unknown }).code;
  const c = typeof code === 'string' ? code : '';
  // EPROTO: OpenSSL received a TLS alert (TLS 1.2 reports a refused handshake that way).
  if (CERT_CODES.has(c) || c.startsWith('ERR_SSL_') || c.startsWith('ERR_TLS_') || c === 'EPROTO') return new TlsError(url, c, err);
  if (afterHandshake && (c === 'ECONNRESET' || c === 'EPIPE')) return new TlsError(url, PEER_CLOSED_AFTER_HANDSHAKE, err);
  if (c === 'ECONNREFUSED') return new ConnectionRefusedError(url, err);
  return new NetError('network', url, `${url}: ${c || (err instanceof Error ? err.message : String(err))}`, { cause: err });
}

export interface MtlsFetchOptions extends MtlsIdentity {
  method?: string;
  /** Sent as is. */
  body?: string | Uint8Array;
  /** Sent as JSON with content-type application/json (instead of `body`). */
  json?: unknown;
  headers?: Record<string, string>;
  /** Deadline for the whole exchange: connect, handshake, response and body. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Larger responses are cut off with a 'network' NetError; the API's answers are small. */
  maxBytes?: number;
}

export interface MtlsResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json<T = unknown>(): T;
}

/**
 * One HTTPS request with this side's client certificate, trusting only the cluster CA. Resolves
 * with any HTTP status; rejects with TlsError, ConnectionRefusedError, TimeoutError or NetError.
 * The server's certificate must carry the URL's IP address (or host name) in its SAN.
 */
export function mtlsFetch(url: string, opts: MtlsFetchOptions): Promise<MtlsResponse> {
  const u = new URL(url);
  if (u.protocol !== 'https:') return Promise.reject(new NetError('network', url, `${url}: only https:// URLs are allowed here`));
  const maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
  const headers: Record<string, string> = { ...opts.headers };
  let payload: string | Uint8Array | undefined = opts.body;
  if (opts.json !== undefined) {
    payload = JSON.stringify(opts.json);
    headers['content-type'] = 'application/json';
  }
  if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload));

  return new Promise<MtlsResponse>((resolve, reject) => {
    let settled = false;
    const finish = (err: NetError | undefined, res?: MtlsResponse) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) {
        req.destroy();
        reject(err);
      } else resolve(res!);
    };
    const onAbort = () => finish(new NetError('aborted', url, `${url}: request aborted`, { cause: opts.signal?.reason }));
    const timer = setTimeout(() => finish(new TimeoutError(url, opts.timeoutMs)), opts.timeoutMs);

    const tls = clientTls(opts, u);
    // secureContext and session reach tls.connect through node's https agent; its types omit them.
    const options: RequestOptions & Pick<ConnectionOptions, 'secureContext' | 'session'> = {
      secureContext: tls.context,
      minVersion: 'TLSv1.2',
      ...(tls.session ? { session: tls.session } : {}),
      method: opts.method ?? (payload === undefined ? 'GET' : 'POST'),
      headers,
      // A private connection per request, never a kept one (see clientTls): the shared agent
      // would pool sockets and TLS sessions across callers that may hold different identities.
      agent: false,
      rejectUnauthorized: true,
    };
    const req = request(u, options);
    let handshakeDone = false;
    let answered = false;
    req.on('socket', (socket) => {
      socket.once('secureConnect', () => (handshakeDone = true));
      socket.on('session', (session: Buffer) => tls.keep(session));
    });
    req.on('error', (err) => finish(classify(err, url, handshakeDone && !answered)));
    req.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) finish(new NetError('network', url, `${url}: response larger than ${maxBytes} bytes`));
        else chunks.push(chunk);
      });
      res.on('error', (err) => finish(classify(err, url)));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        finish(undefined, {
          status: res.statusCode ?? 0,
          headers: res.headers,
          text,
          json: <T>() => JSON.parse(text) as T,
        });
      });
    });
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    req.end(payload);
  });
}

/**
 * This side's TLS for one request: a secure context made once per identity (making one parses
 * the CA, the certificate and the key, which was most of the idle observer's CPU when done per
 * request: docs/benchmarks.md, the daemons' footprint), and the last TLS session ticket the same
 * server gave this identity, to resume. Each request still opens its own connection (kept-alive
 * connections were tried and reverted, see there): resuming only skips the certificates'
 * signatures and checks, proved when the session was made. A server that restarted does not
 * know its old tickets and makes a full handshake, as does any server after
 * SESSION_TTL_MS; the server checks the client's certificate's verification from the session.
 */
function clientTls(id: MtlsIdentity, u: URL): { context: SecureContext; session: Buffer | undefined; keep(session: Buffer): void } {
  const idKey = `${id.ca}\0${id.cert}\0${id.key}`;
  let context = contexts.get(idKey);
  if (!context) {
    if (contexts.size >= MAX_CACHED) contexts.clear();
    context = createSecureContext(tlsBase(id));
    contexts.set(idKey, context);
  }
  const sessionKey = `${u.host}\0${idKey}`;
  const kept = sessions.get(sessionKey);
  const fresh = kept && performance.now() - kept.atMs < SESSION_TTL_MS ? kept.session : undefined;
  return {
    context,
    session: fresh,
    keep: (session) => {
      if (!sessions.has(sessionKey) && sessions.size >= MAX_CACHED) sessions.clear();
      sessions.set(sessionKey, { session, atMs: performance.now() });
    },
  };
}

/** Few identities (a daemon has one) and servers (the cluster's machines); bounded anyway. */
const MAX_CACHED = 256;
/** Below node's server default ticket lifetime (300 s); afterwards a full handshake renews the proof. */
const SESSION_TTL_MS = 120_000;
const contexts = new Map<string, SecureContext>();
const sessions = new Map<string, { session: Buffer; atMs: number }>();
