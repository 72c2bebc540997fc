/**
 * The client of the agent's HTTPS API (the server is ./api.ts), for the observer, `vigil status`,
 * doctor and the lab: GET /status, GET /role and POST /fence (and, between app machines, POST /ride-out), over mutual TLS under the cluster CA
 * (src/mtls/mtls.ts) with the caller's own certificate. This module owns the URLs and what the
 * answers mean; deadlines are the caller's, and so is what to do when an agent does not answer.
 *
 * Not here: apply's `/role` check (src/apply/remote.ts), which runs on the machine itself with
 * that machine's certificate: its private key never leaves the machine, and the admin's shell
 * needs no route to the agent's port.
 */
import type { Machine } from '../config/schema.ts';
import { AGENT_PORT } from '../layout/network.ts';
import { UNITS } from '../layout/units.ts';
import type { AgentStatus } from '../model/ha.ts';
import type { ServerState } from '../proxy/runtime.ts';
import type { RideOutAnswer } from './ride-out.ts';
import { mtlsFetch, NetError, type MtlsIdentity, type MtlsResponse } from '../mtls/mtls.ts';
import { VigilError, problem } from '../util/errors.ts';

export interface AgentCallOptions {
  /** Deadline of the whole exchange: connect, TLS handshake, answer and body. */
  timeoutMs: number;
  signal?: AbortSignal;
}

export type AgentErrorCode = 'AGENT_UNREACHABLE' | 'AGENT_TIMEOUT' | 'AGENT_TLS' | 'AGENT_HTTP' | 'AGENT_ANSWER' | 'AGENT_CANCELLED';

/** An agent call that got no usable answer: which machine, which call, and why. */
export class AgentError extends VigilError {
  declare readonly code: AgentErrorCode;
  readonly url: string;
  /** The HTTP status the agent answered with (AGENT_HTTP, AGENT_ANSWER). */
  readonly status: number | undefined;

  constructor(code: AgentErrorCode, machine: string, url: string, message: string, fix: string, opts: { cause?: unknown; status?: number } = {}) {
    super(code, [problem(`agent on ${machine} (${url})`, message, fix)], {
      cause: opts.cause,
      retryable: code === 'AGENT_UNREACHABLE' || code === 'AGENT_TIMEOUT',
    });
    this.name = 'AgentError';
    this.url = url;
    this.status = opts.status;
  }
}

const START_AGENT = (machine: string) =>
  `check that the agent runs on ${machine} (\`systemctl status ${UNITS.agent}\`) and that this machine reaches its port ${AGENT_PORT}`;

/** One machine's agent API, asked with `identity` (a machine's or the admin's certificate). Holds no connection. */
export class AgentClient {
  readonly baseUrl: string;

  constructor(
    private readonly identity: MtlsIdentity,
    private readonly machine: Pick<Machine, 'name' | 'address'>,
    port = AGENT_PORT,
  ) {
    this.baseUrl = `https://${machine.address}:${port}`;
  }

  /** GET /status: what the agent knows of its machine. */
  async status(o: AgentCallOptions): Promise<AgentStatus> {
    const res = await this.call('GET', '/status', o);
    const body = this.json(res, '/status');
    if (typeof (body as { node?: unknown }).node !== 'string' || typeof (body as { active?: unknown }).active !== 'boolean')
      throw this.badAnswer('/status', res, 'it lacks `node` or `active`');
    return body as AgentStatus;
  }

  /** GET /role: true (200) while the machine is active at the current epoch and its app healthy, false (503) otherwise. */
  async role(o: AgentCallOptions): Promise<boolean> {
    const res = await this.call('GET', '/role', o, undefined, [200, 503]);
    return res.status === 200;
  }

  /**
   * POST /fence {"epoch": N}: the agent stops its services now and never serves below epoch N.
   * Only observer machines and the admin may (403 otherwise: AGENT_HTTP).
   */
  async fence(epoch: number, o: AgentCallOptions): Promise<void> {
    await this.call('POST', '/fence', o, { epoch });
  }

  /**
   * POST /ride-out: this (app) machine, active at `epoch`, cannot reach etcd and asks the agent
   * whether it may go on serving (src/agent/ride-out.ts). A refusal (409) is an answer, not an error.
   */
  async rideOut(node: string, epoch: number, o: AgentCallOptions): Promise<RideOutAnswer> {
    const res = await this.call('POST', '/ride-out', o, { node, epoch }, [200, 409]);
    const body = this.json(res, '/ride-out') as { granted?: unknown; reason?: unknown };
    if (res.status === 200 && body.granted === true) return { granted: true };
    if (res.status === 409 && body.granted === false) return { granted: false, reason: typeof body.reason === 'string' ? body.reason : 'refused' };
    throw this.badAnswer('/ride-out', res, 'it lacks `granted`, or it does not match the status');
  }

  /** GET /proxy: the app backend's servers in the HAProxy of the agent's machine (a proxy machine); `postgres`: the :5000 backend's. */
  async proxyServers(o: AgentCallOptions, backend: 'app' | 'postgres' = 'app'): Promise<ServerState[]> {
    const res = await this.call('GET', backend === 'app' ? '/proxy' : '/proxy?backend=postgres', o);
    const servers = (this.json(res, '/proxy') as { servers?: unknown }).servers;
    if (!Array.isArray(servers)) throw this.badAnswer('/proxy', res, 'it lacks `servers`');
    return servers as ServerState[];
  }

  /** POST /proxy/maint: `server` to MAINT in that HAProxy, its sessions cut. */
  async proxyMaint(server: string, epoch: number, o: AgentCallOptions): Promise<void> {
    await this.call('POST', '/proxy/maint', o, { server, epoch });
  }

  /** POST /proxy/ready: `server` back to READY there; refused (409, AGENT_HTTP) unless etcd's active record names it at `epoch`. */
  async proxyReady(server: string, epoch: number, o: AgentCallOptions): Promise<void> {
    await this.call('POST', '/proxy/ready', o, { server, epoch });
  }

  /** POST /proxy/up: `server` UP there at once (not waiting for its next check); refused (409, AGENT_HTTP) unless etcd's active record names it at `epoch`. */
  async proxyUp(server: string, epoch: number, o: AgentCallOptions): Promise<void> {
    await this.call('POST', '/proxy/up', o, { server, epoch });
  }

  /** The :5000 backend there: `server` to MAINT, or out of it as down until its check passes. */
  async proxyDb(action: 'maint' | 'ready', server: string, o: AgentCallOptions): Promise<void> {
    await this.call('POST', `/proxy/${action}`, o, { server, backend: 'postgres' });
  }

  private async call(method: 'GET' | 'POST', path: string, o: AgentCallOptions, json?: unknown, accept: number[] = [200]): Promise<MtlsResponse> {
    const url = `${this.baseUrl}${path}`;
    let res: MtlsResponse;
    try {
      res = await mtlsFetch(url, {
        ...this.identity,
        method,
        ...(json !== undefined ? { json } : {}),
        timeoutMs: o.timeoutMs,
        ...(o.signal ? { signal: o.signal } : {}),
        maxBytes: 1024 * 1024,
      });
    } catch (err) {
      throw this.transportError(url, o.timeoutMs, err);
    }
    if (!accept.includes(res.status)) {
      const answer = res.text.slice(0, 200);
      const fix =
        res.status === 403
          ? "call it with an observer machine's or the admin's certificate"
          : `read the agent's log on ${this.machine.name} (\`journalctl -u ${UNITS.agent}\`)`;
      throw new AgentError('AGENT_HTTP', this.machine.name, url, `answered ${res.status}: ${answer}`, fix, { status: res.status });
    }
    return res;
  }

  private transportError(url: string, timeoutMs: number, err: unknown): AgentError {
    const name = this.machine.name;
    const why = err instanceof Error ? err.message : String(err);
    if (!(err instanceof NetError)) return new AgentError('AGENT_UNREACHABLE', name, url, `no answer: ${why}`, START_AGENT(name), { cause: err });
    switch (err.kind) {
      case 'tls':
        return new AgentError(
          'AGENT_TLS',
          name,
          url,
          why,
          "reissue the certificates with `vigil apply` (both sides need certificates from this cluster's CA)",
          { cause: err },
        );
      case 'timeout':
        return new AgentError('AGENT_TIMEOUT', name, url, `no answer within ${timeoutMs} ms`, START_AGENT(name), { cause: err });
      case 'aborted':
        return new AgentError('AGENT_CANCELLED', name, url, 'cancelled by the caller', 'none needed', { cause: err });
      default:
        return new AgentError('AGENT_UNREACHABLE', name, url, why, START_AGENT(name), { cause: err });
    }
  }

  private json(res: MtlsResponse, path: string): object {
    let body: unknown;
    try {
      body = res.json();
    } catch {
      throw this.badAnswer(path, res, 'it is not JSON');
    }
    if (typeof body !== 'object' || body === null) throw this.badAnswer(path, res, 'it is not a JSON object');
    return body;
  }

  private badAnswer(path: string, res: MtlsResponse, why: string): AgentError {
    return new AgentError(
      'AGENT_ANSWER',
      this.machine.name,
      `${this.baseUrl}${path}`,
      `its answer is not the agent's: ${why}: ${res.text.slice(0, 200)}`,
      `something other than Vigil's agent answers on port ${AGENT_PORT} of ${this.machine.name}, or its version differs: run \`vigil apply\``,
      { status: res.status },
    );
  }
}

/** The agent of `machine`, asked with a loaded PKI (src/pki/ca.ts loadPki). */
export function agentOf(pki: MtlsIdentity, machine: Pick<Machine, 'name' | 'address'>): AgentClient {
  return new AgentClient({ ca: pki.ca, cert: pki.cert, key: pki.key }, machine);
}
