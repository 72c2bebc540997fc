/**
 * File sync between the app machines of a `distributed` lab, through each machine's own sshd:
 * changes on the active machine reach the standby; a push at a stale epoch is refused; a failover
 * in the middle of a stream of uploads loses no file (what the old active had synced is on the new
 * one, what it had not is quarantined on it when it returns); the direction reverses; a full disk
 * on a standby is reported and recovers.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { withRole } from '../../src/config/schema.ts';
import { PATHS } from '../../src/layout/paths.ts';
import type { SyncStatus } from '../../src/model/ha.ts';
import { labAgents, labDown, labFill, labKill, labRevive, labRun, labSignal, labUnfill, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { hostPathOf } from '../../src/lab/paths.ts';
import { labSettled } from '../../src/lab/settle.ts';
import { withOps } from '../../src/ops/context.ts';
import { LAB_OPS } from '../../src/lab/target.ts';
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

  before(async () => {
    await labDown();
    lab = await labUp({ topology: 'distributed' }, (l) => console.log(`# lab: ${l}`));
    const proxy = withRole(lab.cluster, 'proxy')[0]!;
    base = `http://${proxy.address}:${lab.cluster.proxy.httpPort}`;
  });
  after(() => labDown());

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
        '-a',
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

  it('a full disk on the standby is reported, not a crash, and sync resumes once there is space', async () => {
    const a = await activeNode();
    const s = a === 'app1' ? 'app2' : 'app1';
    await labFill(s, '/var/lib/vigil/app');
    try {
      await writeFile(onHost(a, 'while-full.bin'), Buffer.alloc(256 * 1024, 7));
      const err = await waitFor('the disk-full error', async () => (await syncOf(a)).peers.find((p) => p.node === s)?.error ?? undefined, 30_000, 250);
      assert.equal(err.kind, 'disk-full');
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
