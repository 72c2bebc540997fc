/**
 * The app role/database SQL and pg_hba lines, run against a real PostgreSQL 15 started from the
 * same initdb options patroni.yml gives Patroni.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chown, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import pg from 'pg';
import { appDbDifferences, ensureAppDb, readAppDbState, scramMatches } from '../apply/appdb.ts';
import { LocalShell } from '../testing/helpers.ts';
import { appDatabaseSql, scramVerifier } from './appdb.ts';
import { clusterFixture, freePort, runTool, secretsFixture, tempDir } from '../testing/clusters.ts';
import { patroniConfig, pgHba, postgresBinDir } from './patroni.ts';

const secrets = secretsFixture();

describe('app database SQL', () => {
  it('never carries the password, only a SCRAM verifier', () => {
    const steps = appDatabaseSql(clusterFixture('distributed'), secrets);
    for (const s of steps) assert.ok(!s.sql.includes(secrets.appDbPassword) && !s.what.includes(secrets.appDbPassword));
    const pw = steps.find((s) => s.sensitive)!;
    assert.match(pw.sql, /PASSWORD 'SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+'$/);
  });

  it('computes the verifier of RFC 7677 test vector inputs deterministically', () => {
    const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
    // RFC 7677: user "user", password "pencil", this salt, 4096 iterations → this ServerKey/StoredKey.
    assert.equal(
      scramVerifier('pencil', salt, 4096),
      'SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=',
    );
  });

  it('a stored verifier is matched against a password with its own salt and iterations', () => {
    const v = scramVerifier('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), 4096);
    assert.equal(scramMatches(v, 'pencil'), true);
    assert.equal(scramMatches(v, 'pencil2'), false);
    assert.equal(scramMatches(scramVerifier('pencil'), 'pencil'), true, 'a random salt');
    assert.equal(scramMatches('md5a3556571e93b0d20722ba62be61e8c2d', 'pencil'), false, 'an md5 password is never taken as matching');
  });

  it('quotes names as identifiers (a second guard: the schema admits only lower case, digits and _)', () => {
    const c = clusterFixture('distributed');
    const odd = { ...c, database: { ...c.database, appUser: 'o"dd$$', appDatabase: 'Desk DB' } };
    const steps = appDatabaseSql(odd, secrets);
    assert.match(steps[0]!.sql, /^DO \$vigil\$ .* END \$vigil\$$/, 'a $$ in a name cannot end the body');
    assert.match(steps[0]!.sql, /CREATE ROLE "o""dd\$\$" LOGIN/);
    assert.match(steps[2]!.sql, /CREATE DATABASE "Desk DB" OWNER "o""dd\$\$"/);
  });
});

describe('against PostgreSQL 15', () => {
  const runAsPostgres = ['--reuid=postgres', '--regid=postgres', '--init-groups', '--'];

  it('initdb options, pg_hba lines and the app SQL work; the app logs in with its password over TCP', { timeout: 120_000 }, async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to run PostgreSQL as postgres');
    // 127.0.0.1 as the proxy's address: the app line of pg_hba then admits the test's TCP login.
    const c = clusterFixture('distributed', { addresses: { observer: '127.0.0.1' } });
    const bin = postgresBinDir(c.database.postgresVersion);
    const dir = await tempDir('vigil-pg-');
    const data = join(dir, 'data');
    const sock = join(dir, 'sock');
    await mkdir(sock);
    const uid = Number((await runTool('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await runTool('id', ['-g', 'postgres'])).stdout.trim());
    await chown(dir, uid, gid);
    await chown(sock, uid, gid);

    // Patroni turns bootstrap.initdb into --key=value / --flag arguments.
    const bootstrap = patroniConfig(
      c,
      secrets,
      c.machines.find((m) => m.name === 'db1')!,
    ).bootstrap as { initdb: (string | Record<string, string>)[] };
    const initdbArgs = bootstrap.initdb.flatMap((o) => (typeof o === 'string' ? [`--${o}`] : Object.entries(o).map(([k, v]) => `--${k}=${v}`)));
    const init = await runTool('setpriv', [...runAsPostgres, join(bin, 'initdb'), '-D', data, '-U', c.database.superuser, ...initdbArgs], {
      timeoutMs: 60_000,
    });
    assert.equal(init.code, 0, init.stdout + init.stderr);
    await writeFile(join(data, 'pg_hba.conf'), pgHba(c).join('\n') + '\n');

    const port = await freePort();
    const postgres = spawn(
      'setpriv',
      [
        ...runAsPostgres,
        join(bin, 'postgres'),
        '-D',
        data,
        '-p',
        String(port),
        '-k',
        sock,
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'password_encryption=scram-sha-256',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let log = '';
    postgres.stderr.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
    const exited = new Promise<void>((r) => postgres.once('exit', () => r()));
    const admin = new pg.Client({ host: sock, port, user: c.database.superuser, database: 'postgres' });
    try {
      const deadline = Date.now() + 30_000;
      while ((await runTool(join(bin, 'pg_isready'), ['-h', sock, '-p', String(port)])).code !== 0) {
        if (postgres.exitCode !== null) assert.fail(`postgres exited:\n${log}`);
        if (Date.now() > deadline) assert.fail(`postgres not ready:\n${log}`);
        await sleep(200);
      }
      await admin.connect();
      const hbaErrors = await admin.query('SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL');
      assert.deepEqual(hbaErrors.rows, []);
      const checksums = await admin.query('SHOW data_checksums');
      assert.equal(checksums.rows[0].data_checksums, 'on');

      // As `vigil apply` does it: psql on the local socket, through a machine's shell.
      const shell = new LocalShell('db1');
      const at = { socketDir: sock, port };
      const before = await readAppDbState(shell, c, at);
      assert.deepEqual(before, { verifier: undefined, owner: undefined });
      assert.deepEqual(appDbDifferences(before, c, secrets), [`create the role ${c.database.appUser}`, `create the database ${c.database.appDatabase}`]);
      await ensureAppDb(shell, c, secrets, before, at);
      const made = await readAppDbState(shell, c, at);
      assert.equal(made.owner, c.database.appUser);
      assert.deepEqual(appDbDifferences(made, c, secrets), [], 'nothing left to do: a second apply changes nothing');
      const other = { ...secrets, appDbPassword: 'another-app-password' };
      assert.deepEqual(appDbDifferences(made, c, other), [`set the password of the role ${c.database.appUser} (it differs from appDbPassword)`]);
      await ensureAppDb(shell, c, other, made, at);
      assert.deepEqual(appDbDifferences(await readAppDbState(shell, c, at), c, other), []);
      await ensureAppDb(shell, c, secrets, await readAppDbState(shell, c, at), at); // back to the fixture's password
      const stored = await admin.query('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [c.database.appUser]);
      assert.match(stored.rows[0].rolpassword, /^SCRAM-SHA-256\$/);

      const app = new pg.Client({ host: '127.0.0.1', port, user: c.database.appUser, password: secrets.appDbPassword, database: c.database.appDatabase });
      await app.connect();
      try {
        const who = await app.query('SELECT current_user AS u, current_database() AS d');
        assert.deepEqual(who.rows[0], { u: c.database.appUser, d: c.database.appDatabase });
      } finally {
        await app.end();
      }
      const wrong = new pg.Client({ host: '127.0.0.1', port, user: c.database.appUser, password: 'not-the-password', database: c.database.appDatabase });
      await assert.rejects(wrong.connect(), (e: unknown) => (e as { code?: string }).code === '28P01');
      await wrong.end().catch(() => undefined);
    } finally {
      await admin.end().catch(() => undefined);
      if (postgres.exitCode === null && postgres.signalCode === null && postgres.pid !== undefined) {
        process.kill(postgres.pid, 'SIGINT'); // fast shutdown, by its own PID (setpriv execs postgres)
        const timer = new AbortController();
        await Promise.race([exited, sleep(15_000, undefined, { signal: timer.signal }).catch(() => undefined)]);
        timer.abort();
        if (postgres.exitCode === null && postgres.signalCode === null) process.kill(postgres.pid, 'SIGKILL');
      }
      await rm(dir, { recursive: true, force: true });
    }
  });
});
