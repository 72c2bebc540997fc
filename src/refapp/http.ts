/**
 * Small HTTP helpers for the reference app: JSON answers, bounded JSON bodies, errors that carry
 * their status, and the one-line-per-request JSON log.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

export type Logger = (entry: Record<string, unknown>) => void;

/** Writes one JSON line to stdout, the format the lab's log collection expects. */
export const stdoutLogger: Logger = (entry) => {
  process.stdout.write(`${JSON.stringify({ ts: new Date().toISOString(), ...entry })}\n`);
};

/** An error whose message is safe to show the client as-is. */
export class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.headers = headers;
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** Reads a JSON body of at most `limit` bytes; 413 above it, 400 when it does not parse. */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > limit) throw new HttpError(413, `request body over ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, `request body over ${limit} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new HttpError(400, 'request body is empty: send JSON such as {"title": "printer on fire"}');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new HttpError(400, `request body is not valid JSON: ${(err as Error).message}`);
  }
}

/** Logs method, path, status and duration once the exchange ends, also when the client hangs up. */
export function logRequest(req: IncomingMessage, res: ServerResponse, node: string, log: Logger): void {
  const started = process.hrtime.bigint();
  res.once('close', () => {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const entry: Record<string, unknown> = {
      node,
      method: req.method,
      // The query string is left out: nothing in this API needs it, and it could carry anything.
      path: (req.url ?? '').split('?')[0],
      status: res.statusCode,
      ms: Math.round(ms * 10) / 10,
    };
    if (!res.writableFinished) entry['aborted'] = true;
    log(entry);
  });
}

/** Listens, or rejects with the listen error (a port in use, no permission). */
export function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
