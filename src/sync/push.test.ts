/**
 * The pusher, the receiver and rsync together, on this machine: real rsync, the real bundled
 * receiver, real directories. Only ssh is left out (rsync's remote shell is a script that runs
 * the receiver as sshd's forced command would, with SSH_ORIGINAL_COMMAND set); the lab test
 * (test/lab/file-sync.test.ts) runs the same through sshd between lab machines.
 */
import { bootClockMs } from '../util/boot-clock.ts';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { waitFor } from '../util/exec.ts';
import { bundleReceiver } from './bundle.ts';
import { reconcileArgs, wholeStaging, type AcceptState, type PushTarget } from './protocol.ts';
import { Pusher } from './push.ts';

let base: string;
let receiver: string;

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'vigil-sync-'));
  receiver = join(base, 'receive.mjs');
  await bundleReceiver(receiver);
});
after(() => rm(base, { recursive: true, force: true }));

interface Rig {
  src: string;
  dst: string;
  root: string;
  acceptFile: string;
  quarantine: string;
  sources: string;
  rsh: string;
  setActive(node: string, epoch: number): Promise<void>;
}

/** A source and a destination directory with the receiver's files, and a remote shell that runs the receiver locally. */
async function rig(name: string): Promise<Rig> {
  const root = join(base, name);
  const src = join(root, 'src');
  const dst = join(root, 'dst');
  await mkdir(src, { recursive: true });
  await mkdir(dst, { recursive: true });
  const acceptFile = join(root, 'accept.json');
  const quarantine = join(root, 'quarantine');
  const sources = join(root, 'sources.json');
  const rsh = join(root, 'rsh');
  // rsync runs: rsh <host> <remote command words...>; the peer is fixed as the authorized_keys line fixes it.
  await writeFile(
    rsh,
    [
      '#!/bin/sh',
      'shift',
      `export SSH_ORIGINAL_COMMAND="$*" VIGIL_SYNC_ACCEPT_FILE=${acceptFile} VIGIL_SYNC_RECEIVERS_DIR=${join(root, 'receivers')} VIGIL_SYNC_QUARANTINE=${quarantine} VIGIL_SYNC_SOURCES=${sources}`,
      `exec ${process.execPath} ${receiver} --peer app1`,
      '',
    ].join('\n'),
  );
  await chmod(rsh, 0o755);
  const setActive = async (node: string, epoch: number) => {
    const s: AcceptState = { node: 'app2', active: { node, epoch }, confirmedAtBootMs: bootClockMs(), leaseMs: 3_600_000, dirs: [dst] };
    await writeFile(acceptFile, JSON.stringify(s));
  };
  return { src, dst, root, acceptFile, quarantine, sources, rsh, setActive };
}

function pusher(r: Rig, epoch: number, events: unknown[] = [], whole = false, rsync?: string): Pusher {
  return new Pusher({
    epoch,
    dirs: [r.src],
    ...(whole ? { wholeDirs: [r.src] } : {}),
    remoteDir: () => r.dst,
    peers: [{ node: 'app2', address: 'localhost', sshPort: 22 }],
    sshCommand: () => r.rsh,
    timeoutSeconds: 10,
    batchDelayMs: 10,
    reconcileIntervalMs: 3_600_000,
    checksum: true,
    ...(rsync ? { rsync } : {}),
    log: (event, fields) => events.push({ event, ...fields }),
  });
}

async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string, rel: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(p, r);
      else out[r] = await readFile(p, 'utf8');
    }
  };
  await walk(dir, '');
  return out;
}

const same = async (a: string, b: string) => JSON.stringify(await tree(a)) === JSON.stringify(await tree(b));

test('files created, changed, renamed and deleted on the active side appear so on the standby', async () => {
  const r = await rig('stream');
  await r.setActive('app1', 3);
  await writeFile(join(r.src, 'before.txt'), 'here before the pusher started');
  const p = pusher(r, 3);
  await p.start();
  try {
    await waitFor('the initial reconciliation', async () => ((await same(r.src, r.dst)) ? true : undefined), 30_000, 50);
    await writeFile(join(r.src, 'a.txt'), 'one');
    await mkdir(join(r.src, 'sub', 'deep'), { recursive: true });
    await writeFile(join(r.src, 'sub', 'deep', 'b.txt'), 'two');
    await waitFor('created files', async () => ((await tree(r.dst))['sub/deep/b.txt'] === 'two' ? true : undefined), 30_000, 50);
    await writeFile(join(r.src, 'a.txt'), 'one, changed');
    await rename(join(r.src, 'sub'), join(r.src, 'moved'));
    await rm(join(r.src, 'before.txt'));
    await waitFor('changes, a renamed directory and a deletion', async () => ((await same(r.src, r.dst)) ? true : undefined), 30_000, 50);
    assert.deepEqual(await tree(r.dst), { 'a.txt': 'one, changed', 'moved/deep/b.txt': 'two' });
    const s = p.status();
    assert.equal(s.peers[0]!.error, null);
    assert.ok(s.recentLagMs && s.recentLagMs.samples > 0);
    // Steady-state deletions are the active machine's own: they are carried, not quarantined.
    assert.deepEqual(await readdir(r.quarantine).catch(() => []), []);
  } finally {
    await p.stop();
  }
});

for (const whole of [false, true])
  test(`a root replaced by a rename (an air-gap import) is carried whole: new files there, old ones gone, later changes too${whole ? '; held as one set (--delay-updates, through the receiver)' : ''}`, async () => {
    const r = await rig(whole ? 'replaced-whole' : 'replaced');
    await r.setActive('app1', 3);
    await mkdir(join(r.src, 'old-sub'), { recursive: true });
    await writeFile(join(r.src, 'old-sub', 'a.msu'), 'old set');
    const events: { event: string }[] = [];
    const p = pusher(r, 3, events, whole);
    await p.start();
    try {
      await waitFor('the initial reconciliation', async () => ((await same(r.src, r.dst)) ? true : undefined), 30_000, 50);
      // What src/airgap/import.ts does: the new set staged beside the root, then two renames.
      const staging = join(r.root, '.src.staging');
      await mkdir(join(staging, 'new-sub'), { recursive: true });
      await writeFile(join(staging, 'new-sub', 'b.msu'), 'new set');
      await rename(r.src, join(r.root, '.src.previous'));
      await rename(staging, r.src);
      await waitFor('the new set on the standby', async () => ((await same(r.src, r.dst)) ? true : undefined), 30_000, 50);
      assert.deepEqual(await tree(r.dst), { 'new-sub/b.msu': 'new set' });
      // The new root is watched: a change in it travels as any change does.
      await writeFile(join(r.src, 'new-sub', 'c.msu'), 'written after the import');
      await waitFor('a change in the new root', async () => ((await tree(r.dst))['new-sub/c.msu'] ? true : undefined), 30_000, 50);
      assert.ok(events.some((e) => e.event === 'sync-root-replaced'));
    } finally {
      await p.stop();
    }
  });

test('a directory held as one set is never carried path by path: after a replaced root and a later change, only whole reconciliations ran', async () => {
  const r = await rig('whole-only');
  await r.setActive('app1', 3);
  await mkdir(join(r.src, 'patches'), { recursive: true });
  await writeFile(join(r.src, 'patches', 'kb1.msu'), 'old set');
  // rsync, each run's arguments written down first.
  const runs = join(r.root, 'rsync-runs');
  const wrapper = join(r.root, 'rsync');
  await writeFile(wrapper, `#!/bin/sh\necho "$*" >> ${runs}\nexec rsync "$@"\n`);
  await chmod(wrapper, 0o755);
  const p = pusher(r, 3, [], true, wrapper);
  await p.start();
  try {
    await waitFor('the initial reconciliation', async () => ((await same(r.src, r.dst)) ? true : undefined), 30_000, 50);
    // What src/airgap/import.ts does: the new set staged beside the root, then swapped in. The new
    // root has a subdirectory of the old one's name, which the old root's watch names on the swap.
    const staging = join(r.root, '.src.staging');
    await mkdir(join(staging, 'patches'), { recursive: true });
    for (let i = 1; i <= 5; i++) await writeFile(join(staging, 'patches', `big-${i}.msu`), `new set ${i}`);
    await rename(r.src, join(r.root, '.src.previous'));
    await rename(staging, r.src);
    await waitFor('the new set on the standby', async () => ((await same(r.src, r.dst)) ? true : undefined), 30_000, 50);
    await writeFile(join(r.src, 'patches', 'by-hand.msu'), 'a change in the set');
    await waitFor('the change on the standby', async () => ((await same(r.src, r.dst)) ? true : undefined), 30_000, 50);
    const lines = (await readFile(runs, 'utf8')).trim().split('\n');
    assert.ok(lines.length >= 3, lines.join('\n'));
    assert.deepEqual(
      lines.filter((l) => !l.includes('--delay-updates') || l.includes('--files-from')),
      [],
      'every push of the set was a whole reconciliation',
    );
  } finally {
    await p.stop();
  }
});

test('a whole-set push cut off in the middle leaves the standby the old set; the next one exchanges the new set in, unchanged files linked, not sent', async () => {
  const r = await rig('whole-cut');
  await r.setActive('app1', 3);
  const t = (rsh: string): PushTarget => ({ address: 'localhost', sshPort: 22, epoch: 3, sshCommand: rsh, timeoutSeconds: 10 });
  const push = (rsh: string) => spawnSync('rsync', reconcileArgs(r.src, t(rsh), true, r.dst, false, true), { encoding: 'utf8' });
  await writeFile(join(r.src, 'kept.msu'), 'in both sets');
  await writeFile(join(r.src, 'old.msu'), 'old set only');
  const first = push(r.rsh);
  assert.equal(first.status, 0, first.stderr);
  const oldSet = await tree(r.dst);
  const keptIno = (await stat(join(r.dst, 'kept.msu'))).ino;
  await rm(join(r.src, 'old.msu'));
  for (let i = 1; i <= 12; i++) await writeFile(join(r.src, `big-${String(i).padStart(2, '0')}.msu`), randomBytes(512 << 10));
  // A slow connection (about 1 MB/s), cut once two files of the new set have arrived whole on the
  // standby: rsync on the active side is killed, as when its machine dies.
  const slow = join(r.root, 'rsh-slow');
  const throttle = `perl -e '$|=1; while (sysread(STDIN, $b, 65536)) { syswrite(STDOUT, $b); select(undef, undef, undef, 0.05) }'`;
  await writeFile(slow, (await readFile(r.rsh, 'utf8')).replace(/^exec (.*)$/m, `${throttle} | $1`));
  await chmod(slow, 0o755);
  const staging = wholeStaging(r.dst);
  const client = spawn('rsync', reconcileArgs(r.src, t(slow), true, r.dst, false, true), { stdio: 'ignore' });
  const exited = new Promise((resolve) => client.on('exit', resolve));
  const whole = async () =>
    (await readdir(staging, { recursive: true }).catch(() => [] as string[])).filter(
      (n) => /(^|\/)big-\d+\.msu$/.test(n) && statSync(join(staging, n), { throwIfNoEntry: false })?.size === 512 << 10,
    );
  const arrived = await waitFor('two files of the new set to arrive whole', async () => ((await whole()).length >= 2 ? whole() : undefined), 30_000, 10);
  client.kill('SIGKILL');
  await exited;
  await waitFor('the receiver to end', async () => ((await readdir(join(r.root, 'receivers')).catch(() => [])).length === 0 ? true : undefined), 30_000, 50);
  assert.ok(arrived.length < 12, `the cut came before the whole set had arrived: ${arrived.join(', ')}`);
  assert.deepEqual(await tree(r.dst), oldSet, 'the standby holds the old set, whole');
  // The next push completes: the new set, in one exchange; the unchanged file is the same file (linked).
  const second = push(r.rsh);
  assert.equal(second.status, 0, second.stderr);
  assert.ok(await same(r.src, r.dst));
  assert.equal((await stat(join(r.dst, 'kept.msu'))).ino, keptIno, 'an unchanged file is linked from the old set, not sent again');
  assert.equal(await look(staging), null, 'the old set is removed after the exchange');
  assert.deepEqual(await readdir(r.quarantine).catch(() => []), [], 'the same epoch: nothing to quarantine');
});

test('a whole set from a new epoch: what the old set held and the new one does not goes to quarantine', async () => {
  const r = await rig('whole-quarantine');
  await r.setActive('app1', 4);
  await writeFile(join(r.dst, 'only-here.msu'), 'never reached the new active');
  await writeFile(join(r.dst, 'same.msu'), 'in both');
  await writeFile(join(r.src, 'same.msu'), 'in both');
  await writeFile(join(r.src, 'new.msu'), 'new');
  const t: PushTarget = { address: 'localhost', sshPort: 22, epoch: 4, sshCommand: r.rsh, timeoutSeconds: 10 };
  const res = spawnSync('rsync', reconcileArgs(r.src, t, true, r.dst, false, true), { encoding: 'utf8' });
  assert.equal(res.status, 0, res.stderr);
  assert.deepEqual(await tree(r.dst), { 'new.msu': 'new', 'same.msu': 'in both' });
  const sessions = await readdir(r.quarantine);
  assert.equal(sessions.length, 1);
  const kept = await tree(join(r.quarantine, sessions[0]!));
  const prefix = r.dst.slice(1);
  // same.msu came anew (another time), but with the same bytes: nothing of it is lost, it is not kept.
  assert.deepEqual(kept, { [`${prefix}/only-here.msu`]: 'never reached the new active' });
});

test('a push at a stale epoch is refused and nothing changes on the standby', async () => {
  const r = await rig('stale');
  await r.setActive('app1', 5);
  await writeFile(join(r.dst, 'made-by-the-new-active.txt'), 'keep me');
  await writeFile(join(r.src, 'old.txt'), 'from the old active');
  const events: { event: string; kind?: string; message?: string }[] = [];
  const p = pusher(r, 4, events);
  await p.start();
  try {
    const err = await waitFor('the refusal', async () => p.status().peers[0]!.error ?? undefined, 30_000, 50);
    assert.equal(err.kind, 'refused');
    assert.match(err.message, /stale push from app1 at epoch 4: the active machine is app1 at epoch 5/);
  } finally {
    await p.stop();
  }
  assert.deepEqual(await tree(r.dst), { 'made-by-the-new-active.txt': 'keep me' });
  assert.ok(events.some((e) => e.event === 'sync-failed' && e.kind === 'refused'));
});

test('what only the standby holds is moved to quarantine by the first reconciliation from a new epoch, never deleted', async () => {
  const r = await rig('quarantine');
  await r.setActive('app1', 7);
  await writeFile(join(r.src, 'shared.txt'), 'version on the new active');
  await writeFile(join(r.dst, 'shared.txt'), 'version only the old active had');
  await mkdir(join(r.dst, 'unsynced'), { recursive: true });
  await writeFile(join(r.dst, 'unsynced', 'lost-if-deleted.txt'), 'never reached the new active');
  const p = pusher(r, 7);
  await p.start();
  try {
    await waitFor('the reconciliation', async () => ((await same(r.src, r.dst)) ? true : undefined), 30_000, 50);
    const sessions = await readdir(r.quarantine);
    assert.equal(sessions.length, 1, 'one quarantine session');
    assert.match(sessions[0]!, /-epoch-7-from-app1-/);
    const kept = await tree(join(r.quarantine, sessions[0]!));
    const prefix = r.dst.slice(1);
    assert.deepEqual(kept, {
      [`${prefix}/shared.txt`]: 'version only the old active had',
      [`${prefix}/unsynced/lost-if-deleted.txt`]: 'never reached the new active',
    });
    // The receiver records the completed reconciliation just after rsync has exited.
    const sources = await waitFor(
      'the reconciliation to be recorded',
      async () => (JSON.parse(await readFile(r.sources, 'utf8').catch(() => 'null')) as Record<string, { node: string; epoch: number }> | null) ?? undefined,
      10_000,
      50,
    );
    assert.deepEqual({ node: sources[r.dst]!.node, epoch: sources[r.dst]!.epoch }, { node: 'app1', epoch: 7 });
    // From now on a deletion is the active machine's own and is carried as such.
    await rm(join(r.src, 'shared.txt'));
    await waitFor('the deletion', async () => ((await tree(r.dst))['shared.txt'] === undefined ? true : undefined), 30_000, 50);
    assert.equal((await readdir(r.quarantine)).length, 1, 'no new quarantine session');
  } finally {
    await p.stop();
  }
});

test('an empty directory on the active machine never empties a standby', async () => {
  const r = await rig('empty-source');
  await r.setActive('app1', 9);
  await writeFile(join(r.dst, 'only-copy.txt'), 'the standby holds the only copy');
  const p = pusher(r, 9);
  await p.start();
  try {
    const err = await waitFor('the refusal to empty the standby', async () => p.status().peers[0]!.error ?? undefined, 30_000, 50);
    assert.equal(err.kind, 'failed');
    assert.match(err.message, /is empty on this machine while app2 holds files there: not emptying app2/);
  } finally {
    await p.stop();
  }
  assert.equal(await readFile(join(r.dst, 'only-copy.txt'), 'utf8'), 'the standby holds the only copy');
});

test("a process that keeps rsync's stderr open (ssh's ControlMaster, for a hung standby) holds up neither a push nor stop()", { timeout: 20_000 }, async () => {
  const r = await rig('held-stderr');
  await writeFile(join(r.src, 'a.txt'), 'one');
  const pids = join(r.root, 'pids');
  const hang = join(r.root, 'hang');
  const running = join(r.root, 'running');
  // rsync's stand-in: leaves a process behind on its stderr, as the ControlMaster holds the
  // session's stdio until the standby closes it; then succeeds, or (with the hang file) hangs.
  const rsync = join(r.root, 'rsync');
  await writeFile(
    rsync,
    ['#!/bin/sh', `sleep 60 & echo $! >> ${pids}`, `[ -e ${hang} ] || exit 0`, `echo $$ >> ${pids}; : > ${running}`, 'exec sleep 60', ''].join('\n'),
  );
  await chmod(rsync, 0o755);
  const events: { event: string }[] = [];
  const p = new Pusher({
    epoch: 1,
    dirs: [r.src],
    peers: [{ node: 'app2', address: 'localhost', sshPort: 22 }],
    sshCommand: () => r.rsh,
    rsync,
    timeoutSeconds: 10,
    batchDelayMs: 10,
    reconcileIntervalMs: 3_600_000,
    checksum: false,
    log: (event) => events.push({ event }),
  });
  try {
    const started = Date.now();
    await p.start();
    await waitFor('the reconciliation', async () => (events.some((e) => e.event === 'sync-reconciled') ? true : undefined), 5_000, 20);
    assert.ok(Date.now() - started < 3_000, `the reconciliation took ${Date.now() - started} ms`);
    await writeFile(hang, '');
    p.reconcileNow();
    await waitFor(
      'the hanging push',
      async () =>
        await readFile(running)
          .then(() => true)
          .catch(() => undefined),
      5_000,
      20,
    );
    const stopping = Date.now();
    await p.stop();
    assert.ok(Date.now() - stopping < 3_000, `stop() took ${Date.now() - stopping} ms`);
  } finally {
    await p.stop();
    for (const pid of (await readFile(pids, 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
});

/** lstat, or null when absent. */
const look = (p: string) => lstat(p).catch(() => null);

test('M4: symlinks, FIFOs and devices never reach the standby, a setuid file arrives 0640, directories 0750, owned by the receiver', async () => {
  const r = await rig('hostile');
  await r.setActive('app1', 3);
  await writeFile(join(r.src, 'a.txt'), 'plain');
  await symlink('/etc/shadow', join(r.src, 'link'));
  execFileSync('mkfifo', [join(r.src, 'fifo')]);
  const root = process.getuid?.() === 0;
  if (root) execFileSync('mknod', [join(r.src, 'dev'), 'c', '1', '3']);
  await writeFile(join(r.src, 'suid'), '#!/bin/sh\n');
  await chmod(join(r.src, 'suid'), 0o4755);
  await mkdir(join(r.src, 'open'));
  await chmod(join(r.src, 'open'), 0o777);
  await writeFile(join(r.src, 'open', 'b.txt'), 'in a 777 directory');
  const p = pusher(r, 3);
  await p.start();
  try {
    await waitFor(
      'the initial reconciliation',
      async () => ((await look(join(r.dst, 'open', 'b.txt'))) && (await look(join(r.dst, 'suid'))) ? true : undefined),
      30_000,
      50,
    );
    // An incremental push of the same kinds.
    await symlink('/root', join(r.src, 'link2'));
    await writeFile(join(r.src, 'later.txt'), 'after');
    await waitFor('an incremental push', async () => ((await look(join(r.dst, 'later.txt'))) ? true : undefined), 30_000, 50);
    for (const name of ['link', 'link2', 'fifo', 'dev']) assert.equal(await look(join(r.dst, name)), null, `${name} must not arrive`);
    assert.equal(((await stat(join(r.dst, 'suid'))).mode & 0o7777).toString(8), '640', 'no setuid, no execute, nothing for others');
    assert.equal(((await stat(join(r.dst, 'a.txt'))).mode & 0o7777).toString(8), '640');
    assert.equal(((await stat(join(r.dst, 'open'))).mode & 0o7777).toString(8), '750');
    assert.equal((await stat(join(r.dst, 'a.txt'))).uid, process.getuid?.());
    assert.equal(p.status().peers[0]!.error, null, 'skipped links and FIFOs do not fail the push');
  } finally {
    await p.stop();
  }
});

test('M4: a hostile pusher (rsync run by hand with the key) cannot carry links, devices or owners, nor a setuid mode', async () => {
  const r = await rig('by-hand');
  await r.setActive('app1', 3);
  await writeFile(join(r.src, 'x'), 'x');
  await symlink('/etc', join(r.src, 'etc'));
  await writeFile(join(r.src, 'suid'), 'x');
  await chmod(join(r.src, 'suid'), 0o4755);
  const push = (...opts: string[]) =>
    spawnSync('rsync', [...opts, '-e', r.rsh, '--rsync-path=vigil-sync-push 3 rsync', `${r.src}/`, `localhost:${r.dst}/`], { encoding: 'utf8' });
  for (const flags of [['-a'], ['-rtl'], ['-rtD'], ['-rto'], ['-rtg']]) {
    const res = push(...flags);
    assert.notEqual(res.status, 0, `${flags.join(' ')} accepted`);
    assert.match(res.stderr, /vigil-sync refused: rsync option -[A-Za-z]+e\.[A-Za-z]+ is not one file sync uses/, flags.join(' '));
  }
  assert.deepEqual(await readdir(r.dst), [], 'nothing arrived');
  // Allowed flags, with the sender claiming mode 4755: the receiver's own modes win.
  const ok = push('-rtp', '--chmod=F4755,D0777');
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(((await stat(join(r.dst, 'suid'))).mode & 0o7777).toString(8), '640');
  assert.equal(((await stat(r.dst)).mode & 0o7777).toString(8), '750');
  assert.equal(await look(join(r.dst, 'etc')), null);
});
