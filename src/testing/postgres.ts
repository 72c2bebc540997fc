/**
 * A throw-away PostgreSQL server for tests: its own temp directory, a free loopback port, run as
 * the `postgres` user when the test runs as root (postgres refuses to run as root).
 *
 * Rules it keeps: the superuser password only ever travels through a 0600 file (for initdb) and
 * connections, never a command line; only the postmaster this helper spawned, and the children
 * it lists itself, are ever signalled; everything is removed by destroy().
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { chown, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { freePort } from '../util/net.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';

const execFileP = promisify(execFile);

export interface TestPostgres {
  readonly host: string;
  readonly port: number;
  /** Temp directory holding data/, the socket directory and postgres.log. */
  readonly dir: string;
  /** PID of the running postmaster, undefined while stopped. */
  readonly pid: number | undefined;
  /** Connection settings for the superuser `postgres`. */
  superuser(database?: string): pg.ClientConfig;
  /** Creates a login role and a database it owns. */
  createDatabase(opts: { database: string; user: string; password: string }): Promise<void>;
  /** Stops the postmaster: 'fast' disconnects clients cleanly, 'immediate' is like a crash. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again on the same port and data directory. */
  start(): Promise<void>;
  /** SIGSTOPs the postmaster and its children: the server accepts TCP but never answers. */
  pause(): void;
  resume(): void;
  /** Last lines of the server log, for failure messages. */
  logTail(lines?: number): string;
  /** Stops the server and removes the temp directory. */
  destroy(): Promise<void>;
}

/** Newest installed PostgreSQL bin directory (or $VIGIL_PG_BIN), null if none. */
export function findPgBinDir(): string | null {
  const candidates = [
    process.env['VIGIL_PG_BIN'],
    ...['17', '16', '15', '14'].map((v) => `/usr/lib/postgresql/${v}/bin`),
    '/usr/pgsql-16/bin',
    '/usr/pgsql-15/bin',
  ];
  return candidates.find((d): d is string => !!d && existsSync(join(d, 'postgres')) && existsSync(join(d, 'initdb'))) ?? null;
}

export async function startTestPostgres(opts: { binDir?: string; startTimeoutMs?: number } = {}): Promise<TestPostgres> {
  const binDir = opts.binDir ?? findPgBinDir();
  if (!binDir) throw new Error('no PostgreSQL found: install it or set VIGIL_PG_BIN to its bin directory');
  const owner = processOwner();
  const dir = await mkdtemp(join(tmpdir(), 'vigil-pg-'));
  try {
    if (owner) await chown(dir, owner.uid, owner.gid);
    const password = randomBytes(18).toString('base64url');
    await initdb(binDir, dir, password, owner);
    const server = new PgServer(binDir, dir, await freePort(), password, owner, opts.startTimeoutMs ?? 30_000);
    await server.start();
    return server;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

interface Owner {
  uid: number;
  gid: number;
}

/** As root, processes run as `postgres`; otherwise as the current user. */
function processOwner(): Owner | null {
  if (process.getuid?.() !== 0) return null;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  const [, , uid, gid] = line?.split(':') ?? [];
  if (!uid || !gid) throw new Error('running as root, but there is no postgres user to run PostgreSQL as');
  return { uid: Number(uid), gid: Number(gid) };
}

const CHILD_ENV = { PATH: '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' };

async function initdb(binDir: string, dir: string, password: string, owner: Owner | null): Promise<void> {
  const pwfile = join(dir, 'pwfile');
  await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  if (owner) await chown(pwfile, owner.uid, owner.gid);
  try {
    const args = ['-D', join(dir, 'data'), '-U', 'postgres', `--pwfile=${pwfile}`, '--auth=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync'];
    await execFileP(join(binDir, 'initdb'), args, { cwd: dir, env: CHILD_ENV, ...(owner ?? {}) });
  } finally {
    await unlink(pwfile).catch(() => undefined);
  }
}

class PgServer implements TestPostgres {
  readonly host = '127.0.0.1';
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private paused: number[] = [];
  // If the test process dies without calling destroy(), do not leave a postmaster behind.
  private readonly onExit = () => this.killNow();

  constructor(
    private readonly binDir: string,
    readonly dir: string,
    readonly port: number,
    private readonly password: string,
    private readonly owner: Owner | null,
    private readonly startTimeoutMs: number,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  superuser(database = 'postgres'): pg.ClientConfig {
    return { host: this.host, port: this.port, user: 'postgres', password: this.password, database, connectionTimeoutMillis: 2000 };
  }

  async createDatabase(opts: { database: string; user: string; password: string }): Promise<void> {
    const client = new pg.Client(this.superuser());
    await client.connect();
    try {
      // Utility statements take no parameters; quote with the driver's escaping instead.
      const role = client.escapeIdentifier(opts.user);
      await client.query(`CREATE ROLE ${role} LOGIN PASSWORD ${client.escapeLiteral(opts.password)}`).catch((err: { code?: string }) => {
        if (err.code !== '42710') throw err; // role exists: several databases may share it
      });
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(opts.database)} OWNER ${role}`);
    } finally {
      await client.end();
    }
  }

  async start(): Promise<void> {
    if (this.child) return;
    const log = openSync(join(this.dir, 'postgres.log'), 'a', 0o644);
    const args = ['-D', join(this.dir, 'data'), '-p', String(this.port), '-h', this.host, '-k', this.dir];
    // Durability is irrelevant for a test server; speed is not.
    args.push('-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'max_connections=60');
    const child = spawn(join(this.binDir, 'postgres'), args, { cwd: this.dir, env: CHILD_ENV, stdio: ['ignore', log, log], ...(this.owner ?? {}) });
    closeSync(log);
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    void this.exited.then(() => {
      if (this.child === child) this.child = undefined;
    });
    process.on('exit', this.onExit);
    await this.waitReady(child);
  }

  private async waitReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + this.startTimeoutMs;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`postgres exited during start:\n${this.logTail()}`);
      const client = new pg.Client({ ...this.superuser(), connectionTimeoutMillis: 1000 });
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.end();
        return;
      } catch (err) {
        await client.end().catch(() => undefined);
        if (Date.now() > deadline) throw new Error(`postgres not ready after ${this.startTimeoutMs} ms: ${(err as Error).message}\n${this.logTail()}`);
      }
      await sleep(100);
    }
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.resume(); // a stopped process cannot act on SIGINT
    child.kill(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    const cancel = new AbortController();
    const timeout = sleep(15_000, 'timeout' as const, { signal: cancel.signal }).catch(() => 'exited' as const);
    if ((await Promise.race([this.exited, timeout])) === 'timeout') {
      child.kill('SIGKILL');
      await this.exited;
    }
    cancel.abort();
    this.child = undefined;
    process.off('exit', this.onExit);
  }

  pause(): void {
    const pid = this.child?.pid;
    if (!pid || this.paused.length > 0) return;
    // Children too: existing connections are served by backends, not by the postmaster.
    this.paused = [...childPids(pid), pid];
    for (const p of this.paused) process.kill(p, 'SIGSTOP');
  }

  resume(): void {
    for (const p of this.paused) {
      try {
        process.kill(p, 'SIGCONT');
      } catch {
        // already gone
      }
    }
    this.paused = [];
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(join(this.dir, 'postgres.log'), 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }

  private killNow(): void {
    this.resume();
    if (this.child?.pid) process.kill(this.child.pid, 'SIGKILL');
  }
}

/** PIDs of the processes `pid` forked, from its own /proc entry (no name matching). */
function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
