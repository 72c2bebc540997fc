/**
 * A throw-away single-member etcd for tests: free loopback ports, its own temp data directory,
 * the JSON gateway on (`/v3/...`, used by `health` here and by anyone testing the fallback).
 *
 * Only the process this helper spawned is ever signalled, by its PID; stop() removes the
 * directory. pause()/resume() SIGSTOP/SIGCONT it: the member keeps its TCP sockets open but never
 * answers, which is what a hung machine looks like to a client (a refused connection is the easy
 * case).
 *
 * ```ts
 * const etcd = await startTestEtcd();
 * after(() => etcd.stop());
 * const store = await openStore({ endpoints: [etcd.endpoint], cluster: 't' });
 * ```
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request as httpsRequest } from 'node:https';

export interface TestEtcd {
  /** Client URL, e.g. http://127.0.0.1:40123 */
  readonly endpoint: string;
  /** PID of the etcd process. */
  readonly pid: number;
  readonly dir: string;
  /** SIGSTOPs the member and waits until every thread has stopped: connections stay open, nothing is answered. */
  pause(): Promise<void>;
  resume(): void;
  /** Last lines of etcd's log, for failure messages. */
  logTail(lines?: number): string;
  /** Stops etcd (SIGTERM, then SIGKILL after 5 s) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * `host`/`clientPort`: where clients reach it (default 127.0.0.1 and a free port); a test of a
 * command that finds etcd from a cluster file gives a loopback address of its own and 2379.
 * `tls`: as a cluster's etcd, https with a client certificate required (`certFile`/`keyFile` the
 * member's, naming `host`; `caFile` the CA clients must be issued by); `client` is the identity
 * this helper checks health with.
 */
export async function startTestEtcd(
  opts: {
    binary?: string;
    startTimeoutMs?: number;
    host?: string;
    clientPort?: number;
    tls?: { certFile: string; keyFile: string; caFile: string; client: TlsIdentity };
  } = {},
): Promise<TestEtcd> {
  const binary = opts.binary ?? process.env['VIGIL_ETCD_BIN'] ?? '/usr/bin/etcd';
  const dir = await mkdtemp(join(tmpdir(), 'vigil-etcd-'));
  try {
    const [freeClient, peerPort] = await freePorts(2);
    const host = opts.host ?? '127.0.0.1';
    const client = `${opts.tls ? 'https' : 'http'}://${host}:${opts.clientPort ?? freeClient}`;
    const peer = `http://${host}:${peerPort}`;
    const args = [
      '--name=test',
      `--data-dir=${join(dir, 'data')}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=test=${peer}`,
      '--initial-cluster-state=new',
      '--enable-grpc-gateway',
      // A single member elects itself at once with these; the defaults cost about a second.
      '--heartbeat-interval=50',
      '--election-timeout=250',
      '--log-outputs=stderr',
      ...(opts.tls ? [`--cert-file=${opts.tls.certFile}`, `--key-file=${opts.tls.keyFile}`, '--client-cert-auth', `--trusted-ca-file=${opts.tls.caFile}`] : []),
    ];
    const log = openSync(join(dir, 'etcd.log'), 'a', 0o644);
    const child = spawn(binary, args, { cwd: dir, env: { PATH: '/usr/bin:/bin', LANG: 'C' }, stdio: ['ignore', log, log] });
    closeSync(log);
    const server = new EtcdServer(child, dir, client, opts.tls?.client);
    try {
      await server.waitHealthy(opts.startTimeoutMs ?? 20_000);
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** A client's identity for a TLS etcd: PEM strings (the CA, the certificate, its key). */
export interface TlsIdentity {
  ca: string;
  cert: string;
  key: string;
}

/** A GET over https with a client certificate: `ok` and the body as JSON, like fetch's answer. */
function httpsGet(url: string, id: TlsIdentity, timeoutMs: number): Promise<{ ok: boolean; json(): Promise<unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ...id, timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ ok: res.statusCode === 200, json: async () => JSON.parse(body) as unknown }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/** Closes stores for an after hook: never throws, never waits more than `timeoutMs`, so the hook goes on to stop etcd. */
export async function closeAll(stores: { close(): Promise<void> }[], timeoutMs = 5000): Promise<void> {
  const cancel = new AbortController();
  await Promise.race([Promise.allSettled(stores.map((s) => s.close())), sleep(timeoutMs, undefined, { signal: cancel.signal }).catch(() => undefined)]);
  cancel.abort();
}

class EtcdServer implements TestEtcd {
  private readonly exited: Promise<void>;
  private running = true;
  private paused = false;
  // If the test process dies without calling stop(), do not leave an etcd behind.
  private readonly onExit = () => this.killNow();

  constructor(
    private readonly child: ChildProcess,
    readonly dir: string,
    readonly endpoint: string,
    private readonly identity?: TlsIdentity,
  ) {
    if (child.pid === undefined) throw new Error(`${endpoint}: etcd did not start`);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    void this.exited.then(() => (this.running = false));
    process.on('exit', this.onExit);
  }

  get pid(): number {
    return this.child.pid as number;
  }

  async waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let last = '';
    while (performance.now() < deadline) {
      if (!this.running) throw new Error(`etcd exited during start:\n${this.logTail()}`);
      try {
        const res = this.identity
          ? await httpsGet(`${this.endpoint}/health`, this.identity, 1000)
          : await fetch(`${this.endpoint}/health`, { signal: AbortSignal.timeout(1000) });
        const body = (await res.json()) as { health?: string };
        if (res.ok && body.health === 'true') return;
        last = JSON.stringify(body);
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(50);
    }
    throw new Error(`etcd at ${this.endpoint} not healthy after ${timeoutMs} ms (${last}):\n${this.logTail()}`);
  }

  async pause(): Promise<void> {
    if (!this.running || this.paused) return;
    process.kill(this.pid, 'SIGSTOP');
    this.paused = true;
    // SIGSTOP takes effect thread by thread: on a busy machine etcd was seen answering for up to
    // 170 ms after kill() returned. Tests that expect silence must not start before it is silent.
    const deadline = performance.now() + 5000;
    while (!allThreadsStopped(this.pid)) {
      if (performance.now() > deadline) throw new Error(`etcd (pid ${this.pid}) did not stop within 5 s of SIGSTOP`);
      await sleep(2);
    }
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.running) process.kill(this.pid, 'SIGCONT');
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(join(this.dir, 'etcd.log'), 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  async stop(): Promise<void> {
    if (this.running) {
      this.resume(); // a stopped process does not act on SIGTERM
      this.child.kill('SIGTERM');
      const cancel = new AbortController();
      const timeout = sleep(5000, 'timeout' as const, { signal: cancel.signal }).catch(() => 'exited' as const);
      if ((await Promise.race([this.exited, timeout])) === 'timeout') {
        this.child.kill('SIGKILL');
        await this.exited;
      }
      cancel.abort();
    }
    process.off('exit', this.onExit);
    await rm(this.dir, { recursive: true, force: true });
  }

  private killNow(): void {
    if (!this.running) return;
    if (this.paused) process.kill(this.pid, 'SIGCONT');
    this.child.kill('SIGKILL');
  }
}

/** Whether every thread of `pid` is stopped (or gone), from its own /proc entries. */
function allThreadsStopped(pid: number): boolean {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return true; // the process is gone
  }
  return tids.every((tid) => {
    try {
      // The state follows the command name, which is in parentheses and may contain spaces.
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      return /[TtZX]/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
    } catch {
      return true; // the thread exited
    }
  });
}

/** Distinct TCP ports free on loopback right now (held together so they differ). */
function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer());
  const listening = servers.map(
    (srv) =>
      new Promise<number>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => resolve((srv.address() as { port: number }).port));
      }),
  );
  const release = () => Promise.all(servers.map((srv) => new Promise<void>((r) => (srv.listening ? srv.close(() => r()) : r()))));
  return Promise.all(listening).then(
    async (ports) => {
      await release();
      return ports;
    },
    async (err: unknown) => {
      await release();
      throw err;
    },
  );
}
