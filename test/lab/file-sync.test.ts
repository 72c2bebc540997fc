/**
 * File sync between the app machines of a `distributed` lab, through each machine's own sshd:
 * changes on the active machine reach the standby; symlinks, FIFOs, devices and setuid bits do not
 * (the receiver's forced options); a push at a stale epoch is refused; a failover
 * in the middle of a stream of uploads loses no file (what the old active had synced is on the new
 * one, what it had not is quarantined on it when it returns); the direction reverses; a full disk
 * on a standby is reported and recovers. The air gap: fetch, bundle, carry, import, status and
 * doctor; an alert for every import and refusal at a webhook on the lab's bridge; and the active
 * machine killed while file sync carries a new set to the standby, after several of its files
 * have arrived there (old set or new on the new active machine, never a mix).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmod, cp, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { createBundle } from '../../src/airgap/bundle.ts';
import { describePatchDir } from '../../src/airgap/check.ts';
import { fetchSources } from '../../src/airgap/fetch.ts';
import { initKeys } from '../../src/airgap/keys.ts';
import { runDoctor } from '../../src/doctor/doctor.ts';
import { LAB_OPS, labDoctorTarget } from '../../src/lab/target.ts';
import type { AirgapStatus } from '../../src/ops/airgap-status.ts';
import { clusterStatus } from '../../src/ops/status.ts';
import { vigil } from './run-vigil.ts';
import { withRole } from '../../src/config/schema.ts';
import { PATHS } from '../../src/layout/paths.ts';
import type { SyncStatus } from '../../src/model/ha.ts';
import { labAgents, labDown, labFill, labKill, labRevive, labRun, labSignal, labUnfill, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { hostPathOf } from '../../src/lab/paths.ts';
import { labSettled } from '../../src/lab/settle.ts';
import { BRIDGE_ADDRESS } from '../../src/lab/topology.ts';
import { UNITS } from '../../src/layout/units.ts';
import type { VigilEvent } from '../../src/model/ha.ts';
import { freePort } from '../../src/util/net.ts';
import { printJournals } from './journal.ts';
import { withOps } from '../../src/ops/context.ts';
import { PARTIAL_DIR, SYNC_PATHS } from '../../src/sync/protocol.ts';
import { sleep, waitFor } from '../../src/util/exec.ts';

const DIR = PATHS.refappAttachments;
/** A machine's synced directory seen from this host (valid while no `lab fill` moved it onto a tmpfs). */
const onHost = (node: string, ...rel: string[]) => join(hostPathOf(node, DIR), ...rel);
const quarantineOnHost = (node: string) => hostPathOf(node, SYNC_PATHS.quarantine);

/** Every file under a directory with its content, by relative path; the partial-transfer directory left out. */
async function tree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.name === PARTIAL_DIR) continue;
      if (e.isDirectory()) await walk(p);
      else out.set(relative(dir, p), await readFile(p, 'utf8'));
    }
  };
  await walk(dir);
  return out;
}

const same = (a: Map<string, string>, b: Map<string, string>) => a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);

async function syncOf(node: string): Promise<SyncStatus> {
  const s = (await labAgents()).get(node)?.sync;
  if (!s) throw new Error(`${node}'s agent reports no file sync`);
  return s;
}

async function activeNode(): Promise<string> {
  return waitFor('an active app machine', async () => [...(await labAgents())].find(([, s]) => s?.active)?.[0], 60_000, 250);
}

describe('file sync on distributed', () => {
  let lab: LabHandle;
  let base: string;
  /** What the observers' webhook alerts brought (a receiver on the lab's bridge address). */
  const alerts: { cluster: string; event: VigilEvent }[] = [];
  let hook: http.Server | undefined;

  before(async () => {
    await labDown();
    const hookPort = await freePort();
    lab = await labUp({ topology: 'distributed', alerts: { webhook: { url: `http://${BRIDGE_ADDRESS}:${hookPort}/alerts` } } }, (l) =>
      console.log(`# lab: ${l}`),
    );
    hook = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        try {
          alerts.push(JSON.parse(body) as { cluster: string; event: VigilEvent });
        } catch {
          // not an alert
        }
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((resolve) => hook!.listen(hookPort, BRIDGE_ADDRESS, resolve));
    const proxy = withRole(lab.cluster, 'proxy')[0]!;
    base = `http://${proxy.address}:${lab.cluster.proxy.httpPort}`;
  });
  after(async () => {
    await new Promise<void>((r) => (hook ? hook.close(() => r()) : r()));
    await labDown();
  });

  it('files created, changed, renamed and deleted on the active machine appear so on the standby', async () => {
    await labSettled(lab);
    const a = await activeNode();
    const s = a === 'app1' ? 'app2' : 'app1';
    await mkdir(onHost(a, 'docs', 'deep'), { recursive: true });
    await writeFile(onHost(a, 'docs', 'deep', 'report.txt'), 'first draft');
    await writeFile(onHost(a, 'docs', 'keep.txt'), 'stays');
    await writeFile(onHost(a, 'gone.txt'), 'to be deleted');
    await waitFor(
      'the new files on the standby',
      async () => ((await tree(onHost(s)))?.get('gone.txt') === 'to be deleted' && (await tree(onHost(s))).get('docs/deep/report.txt') ? true : undefined),
      15_000,
      50,
    );
    await writeFile(onHost(a, 'docs', 'deep', 'report.txt'), 'second draft, longer than the first');
    await rename(onHost(a, 'docs', 'deep'), onHost(a, 'docs', 'moved'));
    await rename(onHost(a, 'docs', 'keep.txt'), onHost(a, 'docs', 'kept.txt'));
    await rm(onHost(a, 'gone.txt'));
    await waitFor('the standby to match the active machine', async () => (same(await tree(onHost(a)), await tree(onHost(s))) ? true : undefined), 15_000, 50);
    const t = await tree(onHost(s));
    assert.equal(t.get('docs/moved/report.txt'), 'second draft, longer than the first');
    assert.equal(t.get('docs/kept.txt'), 'stays');
    assert.equal(t.has('docs/deep/report.txt') || t.has('docs/keep.txt') || t.has('gone.txt'), false, 'old names and deleted files are gone');
    const st = await syncOf(a);
    assert.equal(st.role, 'pushing');
    assert.equal(st.peers[0]?.error, null);
    assert.equal((await syncOf(s)).role, 'receiving');
  });

  it("a symlink, a FIFO and a device in the active machine's synced directory never reach the standby, a setuid file arrives 0640; a push by hand with -a is refused (M4)", async () => {
    const a = await activeNode();
    const s = a === 'app1' ? 'app2' : 'app1';
    const look = (p: string) => lstat(p).catch(() => null);
    const mode = async (p: string) => ((await stat(p)).mode & 0o7777).toString(8);
    const hostile = onHost(a, 'hostile');
    await mkdir(hostile, { recursive: true });
    try {
      // What root on the active machine could plant to take the standby (review M4).
      await symlink('/etc/cron.d', join(hostile, 'link'));
      execFileSync('mkfifo', [join(hostile, 'fifo')]);
      execFileSync('mknod', [join(hostile, 'dev'), 'b', '8', '0']);
      await writeFile(join(hostile, 'tool'), '#!/bin/sh\nid\n');
      await chmod(join(hostile, 'tool'), 0o4755);
      await chmod(hostile, 0o777);
      await writeFile(join(hostile, 'marker.txt'), 'arrived');
      await waitFor(
        'the marker and the setuid file on the standby',
        async () => ((await look(onHost(s, 'hostile', 'marker.txt'))) && (await look(onHost(s, 'hostile', 'tool'))) ? true : undefined),
        60_000,
        100,
      ).catch(async (err: unknown) => {
        console.log(`# ${a} sync: ${JSON.stringify(await syncOf(a).catch((e: unknown) => String(e)))}`);
        throw err;
      });
      // A full reconciliation carries the same kinds again: still nothing but plain files.
      for (const name of ['link', 'fifo', 'dev']) assert.equal(await look(onHost(s, 'hostile', name)), null, `${name} must not arrive on ${s}`);
      assert.equal(await mode(onHost(s, 'hostile', 'tool')), '640', 'no setuid, no execute, nothing for others');
      assert.equal(await mode(onHost(s, 'hostile', 'marker.txt')), '640');
      assert.equal(await mode(onHost(s, 'hostile')), '750');
      assert.equal((await stat(onHost(s, 'hostile', 'tool'))).uid, 0, "owned by the receiver's account, not the pusher's");
      assert.equal((await syncOf(a)).peers[0]?.error, null, 'skipping them does not fail the push');

      // Root on the active machine, with its sync key, pushing by hand what the pusher no longer sends.
      const epoch = (await labAgents()).get(a)!.epoch!;
      const sshCmd = `ssh -F /dev/null -i ${SYNC_PATHS.key} -l root -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=${SYNC_PATHS.knownHosts}`;
      const address = lab.cluster.machines.find((m) => m.name === s)!.address;
      for (const flags of ['-a', '-rtl', '-rtD']) {
        const r = await labRun(a, ['rsync', flags, '-e', sshCmd, `--rsync-path=vigil-sync-push ${epoch} rsync`, `${DIR}/`, `${address}:${DIR}/`]);
        assert.notEqual(r.code, 0, `${flags}: ${r.stdout}`);
        assert.match(r.stderr, /vigil-sync refused: rsync option -[A-Za-z]+e\.[A-Za-z]+ is not one file sync uses/, flags);
      }
      for (const name of ['link', 'fifo', 'dev']) assert.equal(await look(onHost(s, 'hostile', name)), null, `${name} after the pushes by hand`);
    } finally {
      await rm(hostile, { recursive: true, force: true });
    }
    await waitFor('the cleanup on the standby', async () => ((await look(onHost(s, 'hostile'))) ? undefined : true), 60_000, 100);
  });

  it('a push at a stale epoch, or from a standby, is refused and changes nothing', async () => {
    const a = await activeNode();
    const s = a === 'app1' ? 'app2' : 'app1';
    const epoch = (await labAgents()).get(a)!.epoch!;
    const before = await tree(onHost(s));
    await mkdir(onHost(a, 'stale'), { recursive: true });
    const sshCmd = `ssh -F /dev/null -i ${SYNC_PATHS.key} -l root -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=${SYNC_PATHS.knownHosts}`;
    const push = (from: string, to: string, e: number) =>
      labRun(from, [
        'rsync',
        '-rt',
        '--delete',
        '-e',
        sshCmd,
        `--rsync-path=vigil-sync-push ${e} rsync`,
        `${DIR}/`,
        `${lab.cluster.machines.find((m) => m.name === to)!.address}:${DIR}/`,
      ]);
    const stale = await push(a, s, epoch - 1);
    assert.notEqual(stale.code, 0);
    assert.match(stale.stderr, new RegExp(`vigil-sync refused: stale push from ${a} at epoch ${epoch - 1}: the active machine is ${a} at epoch ${epoch}`));
    const fromStandby = await push(s, a, epoch);
    assert.notEqual(fromStandby.code, 0);
    assert.match(fromStandby.stderr, new RegExp(`vigil-sync refused: stale push from ${s} at epoch ${epoch}: the active machine is ${a}`));
    const notRsync = await labRun(a, [
      'ssh',
      '-F',
      '/dev/null',
      '-i',
      SYNC_PATHS.key,
      '-l',
      'root',
      '-o',
      'BatchMode=yes',
      '-o',
      `UserKnownHostsFile=${SYNC_PATHS.knownHosts}`,
      lab.cluster.machines.find((m) => m.name === s)!.address,
      'cat',
      '/etc/shadow',
    ]);
    assert.notEqual(notRsync.code, 0);
    assert.match(notRsync.stderr, /vigil-sync refused: not a file-sync push/);
    assert.ok(same(before, await tree(onHost(s))), 'the standby is unchanged');
  });

  it('a failover in the middle of a stream of uploads loses no file; the direction reverses', async () => {
    await labSettled(lab);
    const a = await activeNode();
    const b = a === 'app1' ? 'app2' : 'app1';
    const ticket = (await (
      await fetch(`${base}/api/tickets`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ title: 'file sync under failover' }),
      })
    ).json()) as { id: number };
    const acked = new Map<string, string>(); // path relative to the synced directory -> machine that acknowledged it
    let stop = false;
    let n = 0;
    const uploads = (async () => {
      while (!stop) {
        const name = `stream-${String(++n).padStart(5, '0')}.txt`;
        try {
          const res = await fetch(`${base}/api/tickets/${ticket.id}/attachments/${name}`, {
            method: 'PUT',
            body: `upload ${n}`,
            signal: AbortSignal.timeout(2000),
          });
          if (res.status === 201) acked.set(`${ticket.id}/${name}`, ((await res.json()) as { node: string }).node);
        } catch {
          // no answer during the failover: not acknowledged, so not promised
        }
        await sleep(20);
      }
    })();
    await waitFor(
      'uploads acknowledged by the active machine',
      async () => ([...acked.values()].filter((x) => x === a).length >= 30 ? true : undefined),
      30_000,
      50,
    );
    // Files the old active holds but has not pushed: its agent is paused, then the machine dies.
    await labSignal(a, 'agent', 'SIGSTOP');
    const unsynced = ['late-1.txt', 'late-2.txt', 'late-3.txt'];
    for (const f of unsynced) await writeFile(onHost(a, f), `written on ${a} after its last push`);
    await labKill(a);
    await sleep(1000); // a transfer cut by the kill: the receiver on b notices and cleans up its temporary file
    const syncedAtKill = await tree(onHost(b));
    await waitFor(`${b} to acknowledge uploads`, async () => ([...acked.values()].filter((x) => x === b).length >= 20 ? true : undefined), 60_000, 100);
    stop = true;
    await uploads;

    await labRevive(a);
    await waitFor(
      `${b} to reconcile to the returned ${a}`,
      async () => {
        const p = (await syncOf(b)).peers.find((x) => x.node === a);
        const ready = (await labAgents()).get(a)?.ready;
        return ready && p && !p.error && !p.reconciling && p.backlog === 0 && p.lastReconcileAt ? true : undefined;
      },
      90_000,
      500,
    );
    await waitFor(`${a} to match ${b}`, async () => (same(await tree(onHost(a)), await tree(onHost(b))) ? true : undefined), 30_000, 250);

    const onB = await tree(onHost(b));
    const quarantined = new Map<string, string>();
    for (const [rel, content] of await tree(quarantineOnHost(a)))
      quarantined.set(
        rel
          .split('/')
          .slice(1)
          .join('/')
          .slice(relative('/', DIR).length + 1),
        content,
      );
    // Everything the old active had pushed before it died is on the new active.
    for (const [rel, content] of syncedAtKill) assert.equal(onB.get(rel), content, `${rel}, synced before the failover, is on ${b}`);
    // What it had not pushed was moved aside on it, never deleted.
    for (const f of unsynced) assert.equal(quarantined.get(f), `written on ${a} after its last push`, `${f} is quarantined on ${a}`);
    // No acknowledged upload is lost: each is on the new active, or in the old one's quarantine.
    const lost = [...acked.keys()].filter((rel) => !onB.has(rel) && !quarantined.has(rel));
    assert.deepEqual(lost, [], 'acknowledged uploads missing everywhere');
    // The agent looks at the quarantine every few seconds: its status and an event report it.
    await waitFor(`${a} to report its quarantine`, async () => ((await syncOf(a)).quarantine.files >= unsynced.length ? true : undefined), 15_000, 500);
    const event = await waitFor(
      'a files-quarantined event',
      async () => (await withOps(LAB_OPS, (ctx) => ctx.events.list(50))).find((e) => e.type === 'files-quarantined' && e.node === a),
      15_000,
      500,
    );
    assert.match(event.message, /never reached the active machine were moved aside to \/var\/lib\/vigil\/sync\/quarantine\//);
    console.log(
      `# uploads: ${acked.size} acknowledged (${[...acked.values()].filter((x) => x === a).length} by ${a}), ${syncedAtKill.size} files synced at the kill, ${quarantined.size} quarantined`,
    );

    // The direction has reversed: what the new active receives reaches the old one.
    const res = await fetch(`${base}/api/tickets/${ticket.id}/attachments/after-failover.txt`, { method: 'PUT', body: 'written on the new active' });
    assert.equal(res.status, 201);
    await waitFor(
      `the upload to reach ${a}`,
      async () =>
        (await readFile(onHost(a, String(ticket.id), 'after-failover.txt'), 'utf8').catch(() => '')) === 'written on the new active' ? true : undefined,
      15_000,
      50,
    );
  });

  it('air gap: a vendor catalog fetched, bundled, carried and imported reaches both app machines; backup first; older refused cluster-wide; a standby down converges', async () => {
    await labSettled(lab);
    const started = performance.now();
    const a = await activeNode();
    const s = a === 'app1' ? 'app2' : 'app1';
    const PATCHES = lab.cluster.application.patchDir!;
    const patchesOn = (node: string, ...rel: string[]) => join(hostPathOf(node, PATCHES), ...rel);
    // Outside: a vendor on loopback publishes a catalog and binaries (with their checksums) twice.
    const work = await mkdtemp(join(tmpdir(), 'vigil-lab-airgap-'));
    let files: Record<string, Buffer> = { '/catalog.xml': Buffer.from('<catalog version="1"/>'), '/kb1.msu': randomBytes(300_000) };
    const server = http.createServer((req, res) => {
      const body = files[req.url ?? ''];
      if (body) res.writeHead(200, { 'content-length': body.length }).end(body);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const vendorBase = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const key = join(work, 'airgap.key');
    const trust = join(work, 'airgap-trust.json');
    await initKeys(key, trust);
    const publish = async (name: string) => {
      const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
      const sources = join(work, `${name}.sources`);
      await writeFile(
        sources,
        `${vendorBase}/catalog.xml path=catalog/latest.xml\n${Object.keys(files)
          .filter((u) => u.endsWith('.msu'))
          .map((u) => `${vendorBase}${u} sha256=${sha(files[u]!)} path=patches${u}`)
          .join('\n')}\n`,
      );
      await fetchSources({ sourcesPath: sources, out: join(work, `${name}-fetched`) });
      await createBundle({ dir: join(work, `${name}-fetched`), keyPath: key, out: join(work, name), maxPartBytes: 128 * 1024 });
      // The carry: a copy to another directory (the stick), imported from there.
      await cp(join(work, name), join(work, 'stick', name), { recursive: true });
      return join(work, 'stick', name);
    };
    const b1 = await publish('bundle-1');
    files = { ...files, '/catalog.xml': Buffer.from('<catalog version="2"/>'), '/kb2.msu': randomBytes(200_000) };
    const b2 = await publish('bundle-2');
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const airgap = () => withOps(LAB_OPS, async (ctx) => (await clusterStatus(ctx, 0)).airgap!);
    const holds = (st: AirgapStatus, node: string, seq: number) => {
      const m = st.machines.find((x) => x.name === node)!;
      return m.state?.sequence === seq && m.current;
    };
    const setOf = async (node: string) => [...(await tree(patchesOn(node))).keys()].filter((p) => !p.startsWith('.vigil-airgap')).sort();

    // A ticket written before the import: the backup must hold it.
    const ticket = await fetch(`${base}/api/tickets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'written before the air-gap import' }),
    });
    assert.equal(ticket.status, 201);

    // Inside: the import from the admin's shell, to the active machine.
    const i1 = await vigil(['airgap', 'import', b1, '--trust', trust, '--lab']);
    assert.equal(i1.code, 0, i1.out);
    assert.match(i1.out, /backing up database servicedesk on db\d \(the primary\) with pg_dump/);
    assert.match(
      i1.out,
      new RegExp(
        `imported bundle [0-9a-f]{32} sequence 1 on ${a}; recorded in etcd; database backup (db\\d):(/var/backups/vigil/airgap/before-seq0001-\\S+\\.dump)`,
      ),
    );
    const [, backupHost, backupPath] = /database backup (db\d):(\S+\.dump)/.exec(i1.out)!;
    let seen: AirgapStatus | undefined;
    const st1 = await waitFor(
      'both app machines to hold bundle 1',
      async () => {
        seen = await airgap();
        return holds(seen, a, 1) && holds(seen, s, 1) ? seen : undefined;
      },
      30_000,
      250,
    ).catch((err: Error) => assert.fail(`${err.message}; last seen: ${JSON.stringify(seen)}`));
    assert.equal(st1.converged, true);
    assert.deepEqual(await setOf(s), ['catalog/latest.xml', 'patches/kb1.msu']);
    assert.equal(st1.last?.sequence, 1);
    assert.equal(st1.last?.backup?.path, backupPath);

    // The backup restores into a scratch database and holds the ticket.
    const bin = `/usr/lib/postgresql/${lab.cluster.database.postgresVersion}/bin`;
    const pg = ['-h', PATHS.pgSocketDir, '-p', String(lab.cluster.database.port), '-U', 'postgres'];
    const restore = await labRun(backupHost!, [
      'sh',
      '-c',
      `set -e; ${bin}/createdb ${pg.join(' ')} airgap_scratch; ${bin}/pg_restore ${pg.join(' ')} --no-owner -d airgap_scratch ${backupPath}; ${bin}/psql ${pg.join(' ')} -d airgap_scratch -Atc "select count(*) from tickets where title = 'written before the air-gap import'"; ${bin}/dropdb ${pg.join(' ')} airgap_scratch`,
    ]);
    assert.equal(restore.code, 0, restore.stderr);
    assert.equal(restore.stdout.trim(), '1', 'the ticket is in the restored backup');

    // The standby is down during the import of bundle 2; once back, file sync brings it the set.
    await labKill(s);
    try {
      const i2 = await vigil(['airgap', 'import', b2, '--trust', trust, '--lab']);
      assert.equal(i2.code, 0, i2.out);
      const down = await airgap();
      assert.equal(down.converged, false, 'not converged while the standby is down');
      assert.equal(down.machines.find((m) => m.name === s)!.state, null, 'the standby shows as unknown, not as holding the set');
    } finally {
      await labRevive(s);
    }
    await waitFor('the returned standby to hold bundle 2', async () => (holds(await airgap(), s, 2) ? true : undefined), 90_000, 500);
    assert.deepEqual(await setOf(s), ['catalog/latest.xml', 'patches/kb1.msu', 'patches/kb2.msu']);
    assert.equal(await readFile(patchesOn(s, 'catalog', 'latest.xml'), 'utf8'), '<catalog version="2"/>');

    // Older refused cluster-wide: the active machine's directory lost its own record (restored,
    // rebuilt), so only etcd's record knows bundle 2 came last.
    await rm(patchesOn(a, '.vigil-airgap'), { recursive: true });
    const old = await vigil(['airgap', 'import', b1, '--trust', trust, '--lab']);
    assert.equal(old.code, 26, old.out);
    assert.match(old.out, /AIRGAP_OLDER[\s\S]*sequence 1, older than the last imported \(2\)/);
    assert.equal(await readFile(patchesOn(a, 'catalog', 'latest.xml'), 'utf8'), '<catalog version="2"/>', 'the patch directory is unchanged');
    // The cluster's own bundle puts the record back.
    const back = await vigil(['airgap', 'import', b2, '--trust', trust, '--lab']);
    assert.equal(back.code, 0, back.out);
    await waitFor('both machines at bundle 2 again', async () => ((await airgap()).converged ? true : undefined), 30_000, 250);

    // The same bundle again: nothing to do, no second backup.
    const again = await vigil(['airgap', 'import', b2, '--trust', trust, '--lab']);
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /is the cluster's last import and \S+ holds it: nothing to do/);

    // A file changed on the standby: status and doctor name it.
    await writeFile(patchesOn(s, 'patches', 'kb2.msu'), 'changed by hand');
    const changed = await waitFor(
      'the change to show',
      async () => {
        const m = (await airgap()).machines.find((x) => x.name === s)!;
        return m.state?.different.includes('patches/kb2.msu') ? m : undefined;
      },
      15_000,
      250,
    );
    assert.equal(changed.current, false);
    const report = await runDoctor({ ...(await labDoctorTarget()), probeTimeoutMs: 5000 });
    const findings = report.findings.filter((f) => f.check === 'airgap');
    assert.deepEqual(
      findings.map((f) => [f.machine, f.severity]),
      [[s, 'fail']],
      JSON.stringify(findings),
    );
    assert.match(findings[0]!.what, /differs from the manifest of bundle sequence 2: 1 different \(patches\/kb2\.msu\)/);
    const ran = report.machines.filter((m) => m.checks.some((c) => c.check === 'airgap' && c.status !== 'skipped')).map((m) => m.name);
    assert.deepEqual(ran.sort(), ['app1', 'app2']);

    const events = await withOps(LAB_OPS, (ctx) => ctx.events.list(50));
    assert.ok(events.some((e) => e.type === 'airgap-import' && /sequence 2/.test(e.message)));
    assert.ok(events.some((e) => e.type === 'airgap-refused' && /AIRGAP_OLDER/.test(e.message)));

    // An alert for every import and every refusal, through the observers' webhook: none held back
    // by the rate limit (five imports and a refusal within a minute), each with the bundle's
    // sequence, the machine and, for the refusal, the code and the message.
    const airgapSeqs = (list: VigilEvent[]) =>
      list
        .filter((e) => e.type === 'airgap-import' || e.type === 'airgap-refused')
        .map((e) => e.seq)
        .sort((x, y) => x! - y!);
    await waitFor(
      'an alert for each air-gap event',
      async () => (JSON.stringify(airgapSeqs(alerts.map((x) => x.event))) === JSON.stringify(airgapSeqs(events)) ? true : undefined),
      30_000,
      250,
    ).catch((err: Error) => assert.fail(`${err.message}; events ${JSON.stringify(airgapSeqs(events))}, alerts: ${JSON.stringify(alerts.map((x) => x.event))}`));
    const firstImport = alerts.find((x) => x.event.type === 'airgap-import')!.event;
    assert.equal(firstImport.node, a);
    assert.equal(firstImport.details?.sequence, 1);
    const refusedAlert = alerts.find((x) => x.event.type === 'airgap-refused')!.event;
    assert.equal(refusedAlert.details?.code, 'AIRGAP_OLDER');
    assert.equal(refusedAlert.details?.sequence, 1);
    assert.match(refusedAlert.message, /sequence 1, older than the last imported \(2\)/);

    // The standby's changed file put back: both machines hold bundle 2 as imported.
    await writeFile(patchesOn(s, 'patches', 'kb2.msu'), files['/kb2.msu']!);
    await waitFor('both machines at bundle 2, unchanged', async () => ((seen = await airgap()).converged ? true : undefined), 30_000, 250).catch((err: Error) =>
      assert.fail(`${err.message}; last seen: ${JSON.stringify(seen)}`),
    );
    await importDuringFailover({ b2, key, trust, work, patchesOn, airgap, holds, s, a });
    await rm(work, { recursive: true, force: true });
    console.log(`# air gap part: ${Math.round((performance.now() - started) / 1000)} s`);
  });

  /**
   * A failover in the middle of an import: the active machine dies while file sync carries bundle
   * 3 to the standby, once 8 of its 48 files have arrived there whole. The new active machine holds
   * the old set or the new one, never a mix, and status says which; the import run again completes
   * there and reaches the old active machine once it is back.
   */
  async function importDuringFailover(o: {
    b2: string;
    key: string;
    trust: string;
    work: string;
    patchesOn: (node: string, ...rel: string[]) => string;
    airgap: () => Promise<AirgapStatus>;
    holds: (st: AirgapStatus, node: string, seq: number) => boolean;
    a: string;
    s: string;
  }): Promise<void> {
    const { a, s } = o;
    const from = Date.now();
    let seen: AirgapStatus | undefined;
    const watch = async (what: string, fn: (st: AirgapStatus) => boolean, ms: number) =>
      waitFor(
        what,
        async () => {
          seen = await o.airgap();
          return fn(seen) ? seen : undefined;
        },
        ms,
        250,
      );
    // The set a machine's patch directory holds: every file and its SHA-256, file sync's partial directories left out.
    const heldSet = async (node: string) => {
      const out = new Map<string, string>();
      const root = o.patchesOn(node);
      const walk = async (d: string) => {
        for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
          const p = join(d, e.name);
          if (e.name === PARTIAL_DIR || (d === root && e.name === '.vigil-airgap')) continue;
          if (e.isDirectory()) await walk(p);
          else
            out.set(
              relative(root, p),
              createHash('sha256')
                .update(await readFile(p))
                .digest('hex'),
            );
        }
      };
      await walk(root);
      return out;
    };
    const setOfManifest = async (bundle: string) =>
      new Map(
        (JSON.parse(await readFile(join(bundle, 'manifest.json'), 'utf8')) as { files: { path: string; sha256: string }[] }).files.map((f) => [
          f.path,
          f.sha256,
        ]),
      );
    const sameSet = (x: Map<string, string>, y: Map<string, string>) => x.size === y.size && [...x].every(([k, v]) => y.get(k) === v);
    // The 192 MiB would not fit the next test's small filesystem (`lab fill`): removed whatever happens.
    // File sync may be writing there meanwhile (a standby's staging copy): rm tries again on ENOTEMPTY.
    const gone = { recursive: true, force: true, maxRetries: 20, retryDelay: 250 };
    const cleanUp = async () => {
      for (const node of [s, a]) {
        await rm(o.patchesOn(node, 'patches'), gone);
        await rm(join(o.patchesOn(node), '..', `.${basename(o.patchesOn(node))}.airgap-previous`), gone);
        await rm(join(o.patchesOn(node), '..', `.${basename(o.patchesOn(node))}.sync-staging`), gone);
      }
    };
    try {
      // Bundle 3: 48 files of 4 MiB, so that file sync's copy to the standby takes a while.
      const dir = join(o.work, 'bundle-3-files');
      await mkdir(join(dir, 'patches'), { recursive: true });
      await mkdir(join(dir, 'catalog'), { recursive: true });
      await writeFile(join(dir, 'catalog', 'latest.xml'), '<catalog version="3"/>');
      for (let i = 1; i <= 48; i++) await writeFile(join(dir, 'patches', `big-${String(i).padStart(2, '0')}.msu`), randomBytes(4 << 20));
      const b3 = join(o.work, 'stick', 'bundle-3');
      await createBundle({ dir, keyPath: o.key, out: b3, maxPartBytes: 64 << 20 });
      const oldSet = await setOfManifest(o.b2);
      const newSet = await setOfManifest(b3);
      await rm(dir, { recursive: true });

      const run = vigil(['airgap', 'import', b3, '--trust', o.trust, '--lab']);
      // The new set has landed on the active machine and file sync carries it to the standby: once
      // several of its files have arrived there whole (wherever the receiver keeps them: in place, in
      // rsync's holding directories, in the staging copy beside the directory), kill the active one.
      const staging = join(o.patchesOn(s), '..', `.${basename(o.patchesOn(s))}.sync-staging`);
      const arrivedOn = async () => {
        const whole = new Set<string>();
        for (const root of [o.patchesOn(s), staging])
          for (const n of await readdir(root, { recursive: true }).catch(() => [] as string[])) {
            const name = basename(n);
            if (!/^big-\d+\.msu$/.test(name) || whole.has(name)) continue;
            if ((await stat(join(root, n)).catch(() => null))?.size === 4 << 20) whole.add(name);
          }
        return whole;
      };
      const ARRIVED = 8;
      const arrived = await waitFor(
        `${ARRIVED} files of bundle 3 to have arrived whole on ${s}`,
        async () => {
          const w = await arrivedOn();
          return w.size >= ARRIVED ? w : undefined;
        },
        180_000,
        20,
      );
      await labKill(a);
      const atKill = await heldSet(s);
      const first = await run;
      const liveNewAtKill = sameSet(atKill, newSet);
      console.log(
        `# import during failover: ${a} killed once ${arrived.size} file(s) of bundle 3's ${newSet.size} had arrived whole on ${s}; ${s}'s directory held ${liveNewAtKill ? 'the new set already (the kill came after the exchange: a weaker run)' : sameSet(atKill, oldSet) ? 'the old set' : 'a mix'} at the kill; the import ${first.code === 0 ? 'was recorded before the kill' : `failed (exit ${first.code}): ${first.out.trim().split('\n').slice(-2).join(' / ')}`}`,
      );
      await waitFor(`${s} to take over`, async () => ((await labAgents()).get(s)?.active ? true : undefined), 120_000, 250);

      // Old set or new set on the new active machine, never a mix.
      const held = await heldSet(s);
      const heldSeq = sameSet(held, oldSet) ? 2 : sameSet(held, newSet) ? 3 : null;
      if (heldSeq === null)
        assert.fail(
          `${s} holds a mix: ${[...held.keys()].filter((k) => newSet.get(k) === held.get(k) && oldSet.get(k) !== held.get(k)).length} file(s) of the new set, ${[...held.keys()].filter((k) => oldSet.get(k) === held.get(k) && newSet.get(k) !== held.get(k)).length} of the old one, ${held.size} in all; in neither: ${[
            ...held.keys(),
          ]
            .filter((k) => newSet.get(k) !== held.get(k) && oldSet.get(k) !== held.get(k))
            .slice(0, 5)
            .join(', ')}`,
        );
      // Status tells the truth: the record, what the new active machine holds, and the dead one unknown.
      const recorded = first.code === 0 ? 3 : 2;
      const st = await watch(
        `status to show ${s} holding bundle ${heldSeq}`,
        (x) => {
          const m = x.machines.find((y) => y.name === s)?.state;
          return m?.sequence === heldSeq && m.matches;
        },
        30_000,
      );
      assert.equal(st.last?.sequence, recorded);
      assert.equal(st.machines.find((m) => m.name === a)?.state, null, `${a} is down: unknown`);
      assert.equal(st.converged, false);
      const cli = await vigil(['airgap', 'status', '--lab']);
      assert.equal(cli.code, 3, cli.out);
      assert.match(cli.out, new RegExp(`${s} +sequence ${heldSeq}, \\d+ file\\(s\\), matches its manifest${heldSeq < recorded ? ' BEHIND' : ''}`));
      assert.match(cli.out, new RegExp(`${a} +UNKNOWN`));

      // The same import again completes on the new active machine.
      const again = await vigil(['airgap', 'import', b3, '--trust', o.trust, '--lab']);
      assert.equal(again.code, 0, again.out);
      assert.match(
        again.out,
        new RegExp(`(imported bundle [0-9a-f]{32} sequence 3 on ${s}|sequence 3 is the cluster's last import and ${s} holds it: nothing to do)`),
      );
      await watch(`${s} to hold bundle 3`, (x) => o.holds(x, s, 3) && x.last?.sequence === 3, 60_000);
      assert.ok(sameSet(await heldSet(s), newSet));
    } catch (err) {
      console.log(`# air gap during failover: last status seen: ${JSON.stringify(seen?.machines.map((m) => [m.name, m.state && describePatchDir(m.state)]))}`);
      await printJournals(
        [a, s]
          .flatMap((m): [string, string][] => [[m, UNITS.agent]])
          .concat(withRole(lab.cluster, 'observer').map((m): [string, string] => [m.name, UNITS.observer])),
        from,
        Date.now(),
      );
      await cleanUp();
      throw err;
    } finally {
      await labRevive(a);
    }
    try {
      // The old active machine, back as a standby, gets the set.
      await watch(`${a}, back, to hold bundle 3 too`, (x) => x.converged, 120_000).catch((err: Error) =>
        assert.fail(`${err.message}; last seen: ${JSON.stringify(seen?.machines.map((m) => [m.name, m.state && describePatchDir(m.state)]))}`),
      );
      assert.ok(sameSet(await heldSet(a), await setOfManifest(join(o.work, 'stick', 'bundle-3'))), `${a} holds bundle 3's set`);
      // The next test starts with file sync from the new active machine working again (no error left from while the old one was down).
      let peer: SyncStatus['peers'][number] | undefined;
      await waitFor(
        `file sync from ${s} to ${a} to work again`,
        async () => {
          peer = (await syncOf(s)).peers.find((p) => p.node === a);
          return peer && peer.error === null && peer.backlog === 0 ? true : undefined;
        },
        120_000,
        500,
      ).catch((err: Error) => assert.fail(`${err.message}; last seen: ${JSON.stringify(peer)}`));
    } finally {
      await cleanUp();
    }
  }

  it('a full disk on the standby is reported, not a crash, and sync resumes once there is space', async () => {
    const a = await activeNode();
    const s = a === 'app1' ? 'app2' : 'app1';
    // Start from file sync at rest: the previous test's clean-up (its bundle removed from the patch
    // directory) can cut a push of that directory, whose error stays until the next push succeeds.
    let before: SyncStatus['peers'][number] | undefined;
    await waitFor(
      `file sync from ${a} to ${s} at rest`,
      async () => {
        before = (await syncOf(a)).peers.find((p) => p.node === s);
        return before && before.error === null && before.backlog === 0 && !before.reconciling ? true : undefined;
      },
      120_000,
      500,
    ).catch((err: Error) => assert.fail(`${err.message}; last seen: ${JSON.stringify(before)}`));
    await labFill(s, '/var/lib/vigil/app');
    try {
      await writeFile(onHost(a, 'while-full.bin'), Buffer.alloc(256 * 1024, 7));
      const err = await waitFor('the disk-full error', async () => (await syncOf(a)).peers.find((p) => p.node === s)?.error ?? undefined, 30_000, 250);
      assert.equal(err.kind, 'disk-full', err.message);
      assert.match(err.message, new RegExp(`${s} has no space left for ${DIR}`));
      assert.ok((await syncOf(a)).peers[0]!.backlog >= 1, 'the change waits in the backlog');
      const { formatStatus, clusterStatus } = await import('../../src/ops/status.ts');
      const text = formatStatus(await withOps(LAB_OPS, (ctx) => clusterStatus(ctx)));
      assert.match(text, /no space left/);
    } finally {
      await labUnfill(s, '/var/lib/vigil/app');
    }
    await waitFor('the error to clear', async () => ((await syncOf(a)).peers.find((p) => p.node === s)?.error === null ? true : undefined), 30_000, 250);
    // Read through the machine: its directory now lives on the tmpfs `lab fill` made.
    const size = await labRun(s, ['stat', '-c', '%s', join(DIR, 'while-full.bin')]);
    assert.equal(size.stdout.trim(), String(256 * 1024));
    assert.ok((await labAgents()).get(a)?.active, `${a}'s agent is alive and active`);
  });
});
