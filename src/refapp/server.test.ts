/**
 * The reference app against a real PostgreSQL: the API, attachments on disk, and above all how
 * it behaves when the database pauses, stops and comes back (what a failover looks like to it).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pgLib from 'pg';
import type { RefappConfig } from './properties.ts';
import { formatProperties } from '../util/properties.ts';
import { startRefapp, type RefappServer } from './server.ts';
import { startAnalytics, type AnalyticsReport } from './analytics.ts';
import { findPgBinDir, startTestPostgres, type TestPostgres } from '../testing/postgres.ts';
import { freePort } from '../util/net.ts';

const PgClient = pgLib.Client;
const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DB_PASSWORD = `pw-${randomBytes(12).toString('hex')}`;

interface Reply {
  status: number;
  json: Record<string, unknown>;
  body: Buffer;
  headers: Headers;
  ms: number;
}

async function call(base: string, method: string, path: string, body?: string | Buffer): Promise<Reply> {
  const started = Date.now();
  // The timeout is far above anything the app may take: hitting it means the app hung.
  const payload = typeof body === 'string' || body === undefined ? body : new Uint8Array(body);
  const res = await fetch(base + path, { method, body: payload, signal: AbortSignal.timeout(10_000) });
  const buf = Buffer.from(await res.arrayBuffer());
  const isJson = res.headers.get('content-type')?.startsWith('application/json') ?? false;
  return {
    status: res.status,
    json: isJson ? (JSON.parse(buf.toString()) as Record<string, unknown>) : {},
    body: buf,
    headers: res.headers,
    ms: Date.now() - started,
  };
}

/** Sends the path exactly as written: fetch would resolve `..` segments before sending. */
function rawPut(port: number, path: string, body: string): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'PUT', path, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await check().catch(() => false)) return Date.now() - started;
    await sleep(50);
  }
  assert.fail(`${what}: not within ${timeoutMs} ms`);
}

async function post(port: number, body: unknown): Promise<Reply> {
  return call(`http://127.0.0.1:${port}`, 'POST', '/vigil/activation', JSON.stringify(body));
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const pgBin = findPgBinDir();

describe('refapp against a real PostgreSQL', { skip: pgBin ? false : 'no PostgreSQL installed', timeout: 180_000 }, () => {
  let pg: TestPostgres;
  let workDir: string;
  let config: RefappConfig;
  let app: RefappServer | undefined;
  let late: RefappServer | undefined;
  let base: string;
  const logs: Record<string, unknown>[] = [];

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'vigil-refapp-'));
    pg = await startTestPostgres();
    await pg.createDatabase({ database: 'refapp', user: 'refapp', password: DB_PASSWORD });
    await pg.createDatabase({ database: 'refapp_late', user: 'refapp', password: DB_PASSWORD });
    config = {
      node: 'app1',
      db: { host: pg.host, port: pg.port, name: 'refapp', user: 'refapp', password: DB_PASSWORD },
      http: { host: '127.0.0.1', port: 0 },
      attachmentsDir: join(workDir, 'attachments'),
      startupMs: 0,
      controlPort: 0,
      analyticsPort: 0,
    };
    app = await startRefapp(config, { log: (e) => logs.push(e) });
    base = `http://127.0.0.1:${app.port}`;
    await waitFor('first health 200', async () => (await call(base, 'GET', '/health')).status === 200, 10_000);
  });

  after(async () => {
    await app?.close();
    await late?.close();
    await pg?.destroy();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('answers /health with the node name', async () => {
    const r = await call(base, 'GET', '/health');
    assert.deepEqual([r.status, r.json], [200, { status: 'ok', node: 'app1' }]);
  });

  it('creates a ticket and reads it back', async () => {
    const created = await call(base, 'POST', '/api/tickets', JSON.stringify({ title: '  printer on fire ' }));
    assert.equal(created.status, 201);
    assert.equal(created.json['node'], 'app1');
    assert.ok(Number.isInteger(created.json['id']));
    const read = await call(base, 'GET', `/api/tickets/${created.json['id']}`);
    assert.equal(read.status, 200);
    assert.deepEqual(
      { ...read.json, createdAt: undefined },
      { id: created.json['id'], title: 'printer on fire', node: 'app1', createdAt: undefined, attachments: [] },
    );
    assert.ok(Date.now() - Date.parse(String(read.json['createdAt'])) < 60_000);
  });

  it('refuses bad input with 400 and a JSON error', async () => {
    for (const body of ['{"title": ', '', '[]', '{}', '{"title": 42}', '{"title": "   "}', 'null']) {
      const r = await call(base, 'POST', '/api/tickets', body);
      assert.equal(r.status, 400, `body ${JSON.stringify(body)}`);
      assert.match(String(r.json['error']), /JSON|title|empty/);
    }
    assert.equal((await call(base, 'POST', '/api/tickets', JSON.stringify({ title: 'x'.repeat(501) }))).status, 400);
  });

  it('answers 404 for unknown tickets and routes, 405 for a wrong method', async () => {
    for (const path of ['/api/tickets/999999', '/api/tickets/abc', '/api/tickets/0', '/nope']) {
      const r = await call(base, 'GET', path);
      assert.equal(r.status, 404, path);
      assert.equal(typeof r.json['error'], 'string');
    }
    const r = await call(base, 'DELETE', '/api/tickets/1');
    assert.equal(r.status, 405);
    assert.equal(r.headers.get('allow'), 'GET, HEAD');
  });

  it('stores an attachment on disk and streams it back unchanged', async () => {
    const { json } = await call(base, 'POST', '/api/tickets', JSON.stringify({ title: 'with files' }));
    const id = Number(json['id']);
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const name = 'Bericht März (v2).pdf';
    const path = `/api/tickets/${id}/attachments/${encodeURIComponent(name)}`;
    const put = await call(base, 'PUT', path, data);
    assert.equal(put.status, 201);
    assert.deepEqual(put.json, { ticketId: id, name, size: data.length, sha256: sha256(data), node: 'app1' });

    const got = await call(base, 'GET', path);
    assert.equal(got.status, 200);
    assert.equal(sha256(got.body), sha256(data));
    assert.equal(got.headers.get('x-content-sha256'), sha256(data));

    assert.equal(sha256(await readFile(join(config.attachmentsDir, String(id), name))), sha256(data));
    assert.deepEqual(await readdir(join(config.attachmentsDir, String(id))), [name], 'no temp file left behind');
    assert.deepEqual((await call(base, 'GET', `/api/tickets/${id}`)).json['attachments'], [name]);

    // A second upload under the same name replaces the first.
    const small = Buffer.from('v3');
    assert.equal((await call(base, 'PUT', path, small)).status, 201);
    assert.deepEqual((await call(base, 'GET', path)).body, small);
    assert.equal((await call(base, 'GET', `/api/tickets/${id}/attachments/other.txt`)).status, 404);
  });

  it('refuses attachment names that could leave the ticket directory, and unknown tickets', async () => {
    const { json } = await call(base, 'POST', '/api/tickets', JSON.stringify({ title: 'names' }));
    const id = Number(json['id']);
    const bad = ['..', '..%2F..%2Fescape', 'a%2Fb', 'a/../../escape', '../escape', 'a%5Cb', '.hidden', '%2E%2E', 'bad%ZZ', 'nul%00x', 'x'.repeat(201)];
    for (const name of bad) {
      const r = await rawPut(app!.port, `/api/tickets/${id}/attachments/${name}`, 'data');
      assert.equal(r.status, 400, name);
      assert.match(String(r.json['error']), /attachment name/);
    }
    assert.ok(!(await readdir(config.attachmentsDir)).includes(String(id)), 'nothing written for the ticket');
    assert.deepEqual(await readdir(workDir), ['attachments'], 'nothing written outside the attachments directory');
    assert.equal((await call(base, 'PUT', '/api/tickets/987654/attachments/a.txt', 'data')).status, 404);
  });

  it('logs one JSON line per request, without the password', () => {
    const requests = logs.filter((l) => 'method' in l);
    assert.ok(requests.length > 10);
    for (const l of requests) assert.deepEqual(Object.keys(l).sort(), ['method', 'ms', 'node', 'path', 'status']);
    assert.ok(requests.some((l) => l['method'] === 'POST' && l['path'] === '/api/tickets' && l['status'] === 201));
    assert.ok(!JSON.stringify(logs).includes(DB_PASSWORD));
  });

  it('answers 503 quickly while the database is paused (accepts TCP, never answers)', async () => {
    pg.pause();
    try {
      const h = await call(base, 'GET', '/health');
      assert.equal(h.status, 503);
      assert.equal(h.json['status'], 'down');
      assert.equal(h.json['node'], 'app1');
      assert.ok(h.ms < 2000, `health took ${h.ms} ms`);
      const w = await call(base, 'POST', '/api/tickets', JSON.stringify({ title: 'during pause' }));
      assert.equal(w.status, 503);
      assert.ok(w.ms < 4000, `write took ${w.ms} ms`);
    } finally {
      pg.resume();
    }
    await waitFor('health back after resume', async () => (await call(base, 'GET', '/health')).status === 200, 10_000);
  });

  it('answers 503 while PostgreSQL is stopped and recovers when it is back', async () => {
    await pg.stop();
    const h = await call(base, 'GET', '/health');
    assert.equal(h.status, 503);
    assert.ok(h.ms < 2000, `health took ${h.ms} ms`);
    const w = await call(base, 'POST', '/api/tickets', JSON.stringify({ title: 'while down' }));
    assert.equal(w.status, 503);
    assert.ok(w.ms < 2000, `write took ${w.ms} ms`);
    assert.match(String(w.json['error']), /database unavailable/);

    // An app started while the database is down comes up anyway and reports down.
    late = await startRefapp({ ...config, node: 'app2', db: { ...config.db, name: 'refapp_late' } }, { log: (e) => logs.push(e) });
    const lateBase = `http://127.0.0.1:${late.port}`;
    assert.equal((await call(lateBase, 'GET', '/health')).status, 503);

    await pg.start();
    await waitFor('health back after restart', async () => (await call(base, 'GET', '/health')).status === 200, 10_000);
    assert.equal((await call(base, 'POST', '/api/tickets', JSON.stringify({ title: 'after restart' }))).status, 201);
    // Its schema is created in the background once the database answers.
    await waitFor('late app healthy', async () => (await call(lateBase, 'GET', '/health')).status === 200, 10_000);
    const created = await call(lateBase, 'POST', '/api/tickets', JSON.stringify({ title: 'late' }));
    assert.deepEqual([created.status, created.json['node']], [201, 'app2']);
  });

  it('answers 503 "starting" until its start-up time is over', async () => {
    const slow = await startRefapp({ ...config, node: 'slow', startupMs: 600_000 }, { log: () => undefined });
    try {
      const r = await call(`http://127.0.0.1:${slow.port}`, 'GET', '/health');
      assert.deepEqual([r.status, r.json['status']], [503, 'starting']);
      assert.match(String(r.json['error']), /^starting: up in \d+ s$/);
      // The activation endpoint answers during start-up; the job waits for the end of it.
      const a = await post(slow.controlPort, { active: true, epoch: 1, validForMs: 30_000 });
      assert.deepEqual([a.status, a.json['active']], [200, true]);
      await slow.background.tick();
      assert.equal(slow.background.runs, 0);
    } finally {
      await slow.close();
    }
  });

  it('runs the SLA job only while activated, records it, and is fenced by a newer epoch', async () => {
    const runs = async (node: string, epoch: number) => {
      const client = new PgClient(pg.superuser('refapp'));
      await client.connect();
      try {
        const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM sla_runs WHERE node = $1 AND epoch = $2', [node, epoch]);
        return Number(rows[0]!.n);
      } finally {
        await client.end();
      }
    };
    assert.equal(app!.background.state().active, false, 'a started process is inactive');
    assert.equal((await post(app!.controlPort, { active: true, epoch: 5, validForMs: 30_000 })).status, 200);
    await waitFor('app1 to run the job at epoch 5', async () => (await runs('app1', 5)) >= 2, 15_000);
    const off = await post(app!.controlPort, { active: false });
    assert.deepEqual([off.status, off.json['active']], [200, false]);
    const after = await runs('app1', 5);
    await app!.background.tick();
    assert.equal(await runs('app1', 5), after, 'no run once deactivated');
    // A second process activated at an older epoch is fenced by the database.
    const other = await startRefapp({ ...config, node: 'app9', startupMs: 0 }, { log: (e) => logs.push(e) });
    try {
      await waitFor('app9 healthy', async () => (await call(`http://127.0.0.1:${other.port}`, 'GET', '/health')).status === 200, 10_000);
      await post(other.controlPort, { active: true, epoch: 4, validForMs: 30_000 });
      await other.background.tick();
      assert.equal(await runs('app9', 4), 0, 'an older epoch never writes');
      assert.equal(other.background.state().active, false, 'fenced: inactive until a newer activation');
      assert.ok(logs.some((l) => l['event'] === 'sla-fenced' && l['node'] === 'app9'));
    } finally {
      await other.close();
    }
  });

  it('refuses a bad activation with 400 naming the field', async () => {
    for (const [body, field] of [
      [{ active: 'yes' }, 'active'],
      [{ active: true, validForMs: 1000 }, 'epoch'],
      [{ active: true, epoch: 1, validForMs: 0 }, 'validForMs'],
    ] as const) {
      const r = await post(app!.controlPort, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(String(r.json['error']), new RegExp(`"${field}"`));
    }
  });

  it('analytics service: 503 starting until it reached the database, then 200 with the report; a new ticket shows at the next report', async () => {
    await pg.createDatabase({ database: 'refapp_empty', user: 'refapp', password: DB_PASSWORD });
    // No tickets table yet (the application never ran there): the report fails, the service is not ready.
    const empty = await startAnalytics({ ...config, db: { ...config.db, name: 'refapp_empty' } }, { log: (e) => logs.push(e), intervalMs: 60_000 });
    try {
      await empty.refresh();
      const r = await call(`http://127.0.0.1:${empty.port}`, 'GET', '/health');
      assert.equal(r.status, 503);
      assert.equal(r.json['status'], 'starting');
      assert.match(String(r.json['lastError']), /tickets/);
    } finally {
      await empty.close();
    }
    const analytics = await startAnalytics(config, { log: (e) => logs.push(e), intervalMs: 60_000 });
    try {
      const url = `http://127.0.0.1:${analytics.port}`;
      await analytics.refresh();
      const first = await call(url, 'GET', '/health');
      assert.deepEqual([first.status, first.json['status'], first.json['node'], first.json['lastError']], [200, 'ok', 'app1', null]);
      const before = (first.json['report'] as { tickets: number }).tickets;
      const created = await call(base, 'POST', '/api/tickets', JSON.stringify({ title: 'counted' }));
      await analytics.refresh();
      const report = await call(url, 'GET', '/report');
      assert.deepEqual([report.status, (report.json['report'] as AnalyticsReport).tickets], [200, before + 1]);
      assert.equal((report.json['report'] as AnalyticsReport).newestTicketId, created.json['id']);
      assert.equal((await call(url, 'GET', '/nothing')).status, 404);
      assert.equal((await call(url, 'POST', '/health')).status, 405);
    } finally {
      await analytics.close();
    }
  });

  it('shuts down promptly and stops listening', async () => {
    const started = Date.now();
    await app!.close();
    assert.ok(Date.now() - started < 3000);
    await assert.rejects(call(base, 'GET', '/health'));
    app = undefined;
  });

  it('runs from a properties file until SIGTERM (vigil refapp)', async () => {
    const port = await freePort();
    const file = join(workDir, 'application.properties');
    const props = {
      'vigil.node': 'app3',
      'db.host': pg.host,
      'db.port': String(pg.port),
      'db.name': 'refapp',
      'db.user': 'refapp',
      'spring.datasource.password': DB_PASSWORD,
      'http.host': '127.0.0.1',
      'http.port': String(port),
      'attachments.dir': join(workDir, 'attachments3'),
      'startup.seconds': '0',
      'control.port': String(await freePort()),
    };
    await writeFile(file, `# test\n${formatProperties(props)}`, { mode: 0o600 });
    // main.ts wires the sub-command in; here a bare program keeps the test to this module.
    const script = `import { Command } from 'commander';
      import { registerRefapp } from './src/refapp/cli.ts';
      const program = new Command('vigil');
      registerRefapp(program);
      await program.parseAsync(process.argv.slice(1), { from: 'user' });`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, 'refapp', '--config', file], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitFor('cli app healthy', async () => (await call(`http://127.0.0.1:${port}`, 'GET', '/health')).status === 200, 15_000);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0);
    const lines = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(lines.some((l) => l['event'] === 'signal' && l['signal'] === 'SIGTERM'));
    assert.ok(lines.some((l) => l['event'] === 'stopped'));
    assert.ok(lines.some((l) => l['path'] === '/health' && l['status'] === 200));
    assert.ok(!stdout.includes(DB_PASSWORD));
  });
});
