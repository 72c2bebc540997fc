/**
 * The `/metrics` listener of a daemon, as the cluster file's `metrics` section says: plain HTTP,
 * or HTTPS that lets in only a client certificate of the cluster CA (`auth: mtls`). Its own port,
 * apart from the agent's API, so Prometheus never needs the API's rights. A listener that cannot
 * start (the port taken) is logged and left out: metrics must never stop a daemon that fences.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Cluster } from '../config/schema.ts';
import { metricsHost } from '../layout/network.ts';
import { createMtlsServer, type MtlsIdentity } from '../mtls/mtls.ts';

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

export interface ServeMetricsOptions {
  cluster: Cluster;
  machine: { name: string; address: string };
  port: number;
  registry: Registry;
  /** The machine's cluster-CA identity, for `auth: mtls`. */
  pki: MtlsIdentity;
  log: (event: string, fields?: Record<string, unknown>) => void;
}

/** Starts the listener; null when metrics are off or it could not listen (logged). */
export async function serveMetrics(o: ServeMetricsOptions): Promise<MetricsServer | null> {
  const m = o.cluster.metrics;
  if (!m.enabled) return null;
  const host = metricsHost(o.cluster, o.machine);
  const handler = (req: IncomingMessage, res: ServerResponse) => void answer(o.registry, req, res);
  try {
    if (m.auth === 'mtls') {
      const s = await createMtlsServer({ ...o.pki, host, port: o.port, handler, onHandlerError: (err) => o.log('metrics-error', { error: String(err) }) });
      o.log('metrics-listening', { url: `https://${host}:${s.port}/metrics`, auth: 'mtls' });
      return { port: s.port, close: () => s.close() };
    }
    const server = createServer({ requestTimeout: 10_000, headersTimeout: 5_000 }, handler);
    server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    o.log('metrics-listening', { url: `http://${host}:${port}/metrics`, auth: 'none' });
    return {
      port,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    };
  } catch (err) {
    o.log('metrics-not-served', {
      host,
      port: o.port,
      error: (err as Error).message,
      fix: `free port ${o.port} on ${o.machine.name} or change metrics.${portField(o)} in the cluster file`,
    });
    return null;
  }
}

const portField = (o: ServeMetricsOptions) => (o.port === o.cluster.metrics.observerPort ? 'observerPort' : 'agentPort');

async function answer(registry: Registry, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (path !== '/metrics') {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('only /metrics is served here\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('GET /metrics\n');
    return;
  }
  try {
    const body = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : body);
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(err as Error).message}\n`);
  }
}
