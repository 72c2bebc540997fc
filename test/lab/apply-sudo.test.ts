/**
 * `vigil init` and `vigil apply` as a user other than root, through real sudo: the bare machines
 * get an account `vigil-admin` with a password and a rule in /etc/sudoers.d for password-less
 * sudo (`vigil lab up --bare --ssh-user`), and the cluster file names that user. Then:
 *   - without its sudo rule on one machine, init stops and writes no cluster file; with it, init
 *     installs the admin key for that user;
 *   - without its sudo rule on one machine, apply stops before it changes anything, naming the
 *     machine and the rule to add;
 *   - air gap (issue 17 part 3): the lab's mirror stands for the internet side; `vigil airgap
 *     fetch` resolves a Debian package set from it (`deb` line, the closure beyond a bare
 *     machine's dpkg status), `vigil airgap bundle` signs it; then the mirror is stopped and the
 *     machines' package lists removed, so apt on every machine reaches no mirror (shown:
 *     `apt-get update` fails on each);
 *   - `apply --offline` with a bundle whose set lacks socat stops before any machine installs
 *     anything, naming socat, the observer (which needs it) and the bundle;
 *   - with the full bundle, `apply --offline` brings the machines to a cluster, logging in only as
 *     vigil-admin (the set copied and installed through sudo); a ticket is written through :80 and
 *     read back; what it writes belongs to root; no staging directory is left; a second apply
 *     changes nothing; doctor finds nothing wrong.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, cp, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OFFLINE_DIR } from '../../src/apply/offline.ts';
import { PATHS } from '../../src/layout/paths.ts';
import { withRole } from '../../src/config/schema.ts';
import { labUpBare } from '../../src/lab/bare.ts';
import { labDown, labRun, openLab } from '../../src/lab/lab.ts';
import { MIRROR_PORT, stopMirror } from '../../src/lab/mirror.ts';
import { DEFAULT_RELEASE, RELEASE_INFO, requireRootfs } from '../../src/lab/rootfs.ts';
import { BRIDGE_ADDRESS } from '../../src/lab/topology.ts';
import { LAB_DIR, clusterFilePath, hostPathOf } from '../../src/lab/paths.ts';
import { vigil } from './run-vigil.ts';
import { printJournals, unitJournal } from './journal.ts';
import { UNITS } from '../../src/layout/units.ts';

const USER = 'vigil-admin';

describe('init and apply as a user with password-less sudo', () => {
  const cfg = clusterFilePath();
  const rule = (m: string) => hostPathOf(m, '/etc/sudoers.d/vigil');

  let answers: string;
  let air: string;
  const machines = ['observer', 'app1', 'app2'];

  before(async () => {
    await labDown();
    answers = await labUpBare({ topology: 'pair' }, (l) => console.log(`# lab: ${l}`), { sshUser: USER });
    air = await mkdtemp(join(tmpdir(), 'vigil-offline-'));
  });
  after(async () => {
    await labDown();
    await rm(air, { recursive: true, force: true });
  });

  it('init stops when one machine has no sudo rule for the user, and writes no cluster file', async () => {
    await rename(rule('app2'), `${rule('app2')}.off`);
    try {
      const r = await vigil(['init', '--answers', answers, '--accept-host-keys', '-d', LAB_DIR]);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /app2 \(vigil-admin@[\d.]+:22\): sudo asks vigil-admin for a password/, r.out);
      assert.match(r.out, new RegExp(`${USER} ALL=\\(ALL\\) NOPASSWD: ALL`), r.out);
      await assert.rejects(stat(cfg), 'no cluster file written');
    } finally {
      await rename(`${rule('app2')}.off`, rule('app2'));
    }
    const init = await vigil(['init', '--answers', answers, '--accept-host-keys', '-d', LAB_DIR]);
    assert.equal(init.code, 0, init.out);
    assert.match(init.out, new RegExp(`admin key installed for ${USER}`));
  });

  it('without the sudo rule on one machine, apply stops before changing anything and names the rule', async () => {
    await rename(rule('app2'), `${rule('app2')}.off`);
    try {
      const r = await vigil(['apply', '-c', cfg]);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /app2/);
      assert.match(r.out, new RegExp(`${USER} ALL=\\(ALL\\) NOPASSWD: ALL`), r.out);
      for (const m of ['observer', 'app1', 'app2']) await assert.rejects(stat(hostPathOf(m, PATHS.clusterFile)), `nothing written on ${m}`);
    } finally {
      await rename(`${rule('app2')}.off`, rule('app2'));
    }
  });

  it('air gap: fetch a Debian package set from the mirror (the internet side) and bundle it; then no machine reaches a mirror', async () => {
    const release = DEFAULT_RELEASE;
    // The closure is resolved against what a bare machine of the release has: its dpkg status.
    await copyFile(join(requireRootfs(release, 'bare'), 'var/lib/dpkg/status'), join(air, 'bare-status'));
    const repo = `http://${BRIDGE_ADDRESS}:${MIRROR_PORT}/`;
    const deb = `deb ${repo} release=debian/${RELEASE_INFO[release].debian} base=bare-status`;
    await writeFile(join(air, 'sources.txt'), `# the lab's mirror stands for Debian's archive\n${deb} packages=@vigil\n`);
    // The same set without socat (the observer's haproxy unit needs it): a bundle that lacks a package.
    const noSocat = 'etcd-server,etcd-client,haproxy,postgresql-17,patroni,python3-etcd,nftables,nginx,rsync,openssl,ca-certificates';
    await writeFile(join(air, 'sources-no-socat.txt'), `${deb} packages=${noSocat}\n`);
    const keys = await vigil(['airgap', 'keys', 'init', '--key', join(air, 'k.key'), '--trust', join(air, 'trust.json')]);
    assert.equal(keys.code, 0, keys.out);
    for (const [sources, out] of [
      ['sources.txt', 'fetched'],
      ['sources-no-socat.txt', 'fetched-no-socat'],
    ] as const) {
      // The second set starts from a copy of the first: fetch keeps the files that match and removes socat's.
      if (out === 'fetched-no-socat') await cp(join(air, 'fetched'), join(air, out), { recursive: true });
      const f = await vigil(['airgap', 'fetch', '--sources', join(air, sources), '--out', join(air, out)]);
      assert.equal(f.code, 0, f.out);
      assert.match(f.out, /debian-13: \d+ packages \([\d.]+ MiB\) for \d+ asked, beyond the base in/);
      assert.match(f.out, /index NOT verified: the repository has no InRelease/);
      assert.match(
        f.out,
        new RegExp(
          `${out === 'fetched' ? 'downloaded' : 'present'} +debian-13/postgresql-17_\\S+\\.deb \\d+ bytes sha256:[0-9a-f]{64} \\(matches the published checksum\\)`,
        ),
      );
      const b = await vigil(['airgap', 'bundle', join(air, out), '--key', join(air, 'k.key'), '--out', join(air, `${out}.bundle`), '--max-part-size', '64M']);
      assert.equal(b.code, 0, b.out);
    }
    // From here on the machines reach no mirror: it is stopped, and their package lists are gone.
    await stopMirror();
    for (const m of machines) {
      await labRun(m, ['sh', '-c', 'rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin']);
      const u = await labRun(m, ['apt-get', 'update', '--error-on=any', '-q']);
      assert.notEqual(u.code, 0, `${m}: apt-get update reached a mirror:\n${u.stdout}${u.stderr}`);
      assert.match(`${u.stdout}${u.stderr}`, new RegExp(`${BRIDGE_ADDRESS.replaceAll('.', '\\.')}.*(refused|connect)`, 'i'), `${m}: ${u.stdout}${u.stderr}`);
      const c = await labRun(m, ['apt-cache', 'policy', 'haproxy']);
      assert.doesNotMatch(c.stdout, /Candidate: \d/, `${m}: apt knows no haproxy to install:\n${c.stdout}`);
    }
  });

  it('apply --offline with a bundle whose set lacks socat stops before any machine installs anything, naming socat, the machine and the bundle', async () => {
    const bundle = join(air, 'fetched-no-socat.bundle');
    const r = await vigil(['apply', '-c', cfg, '--offline', bundle, '--trust', join(air, 'trust.json')]);
    assert.equal(r.code, 1, r.out);
    assert.match(
      r.out,
      new RegExp(`observer, step packages: the bundle [0-9a-f]+ sequence \\d+ at ${bundle.replaceAll('.', '\\.')} has no package socat for debian/13`),
      r.out,
    );
    assert.match(r.out, /nothing was installed/);
    for (const [m, pkg] of [
      ['observer', 'haproxy'],
      ['app1', 'postgresql-17'],
      ['app2', 'postgresql-17'],
    ] as const) {
      const q = await labRun(m, ['dpkg-query', '-W', '-f=${db:Status-Status}', pkg]);
      assert.notEqual(q.stdout.trim(), 'installed', `${m}: ${pkg} was not installed`);
      await assert.rejects(stat(hostPathOf(m, OFFLINE_DIR)), `${m}: no staging directory`);
    }
  });

  it("apply --offline makes a cluster from the bundle with no mirror, logging in only as the user; what it writes is root's; a second apply changes nothing", async () => {
    const from = Date.now();
    // A generous deadline: the packages step copies 110 MiB to each machine and installs it; on a loaded machine that took 205 s once.
    const r = await vigil(['apply', '-c', cfg, '--offline', join(air, 'fetched.bundle'), '--trust', join(air, 'trust.json')], { timeoutMs: 900_000 });
    console.log(`# apply --offline, bare machines to a verified cluster: ${((Date.now() - from) / 1000).toFixed(1)} s`);
    if (r.code !== 0)
      await printJournals(
        [...machines.map((m): [string, string] => [m, UNITS.agent]), ['app1', UNITS.patroni], ['app2', UNITS.patroni], ['observer', UNITS.etcd]],
        from,
        Date.now(),
      );
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /offline: bundle [0-9a-f]+ sequence \d+ verified; package sets: debian-13 \(debian\/13 amd64, \d+ packages\)/);
    for (const [m, pkg] of [
      ['observer', 'haproxy'],
      ['app1', 'postgresql-17'],
      ['app2', 'postgresql-17'],
    ])
      assert.match(r.out, new RegExp(`${m} +packages: install [^\\n]*${pkg}[^\\n]* from bundle [0-9a-f]+ sequence \\d+ \\(offline\\)`), r.out);
    assert.match(r.out, /cluster verified/);
    for (const m of machines) {
      await assert.rejects(stat(hostPathOf(m, OFFLINE_DIR)), `${m}: the staging directory is removed`);
      const u = await labRun(m, ['apt-get', 'update', '--error-on=any', '-q']);
      assert.notEqual(u.code, 0, `${m}: still no mirror reachable after the install`);
    }
    const { cluster } = await openLab();
    const addresses = new Set(cluster.machines.map((m) => m.address));
    for (const m of cluster.machines) {
      const log = (await unitJournal(m.name, 'ssh.service')).map((l) => l.message).join('\n');
      const logins = [...log.matchAll(/Accepted \S+ for (\S+) from (\S+)/g)].map(([, user, from]) => ({ user: user!, from: from! }));
      assert.ok(
        logins.some((l) => l.user === USER),
        `${m.name}: the admin logged in as ${USER}`,
      );
      // File sync logs in as root with its own key from the other app machine; the admin never does.
      const adminAsRoot = logins.filter((l) => l.user === 'root' && !addresses.has(l.from));
      assert.deepEqual(adminAsRoot, [], `${m.name}: no login as root from the admin's machine`);
      const written = await stat(hostPathOf(m.name, PATHS.clusterFile));
      assert.equal(written.uid, 0, `${m.name}: ${PATHS.clusterFile} belongs to root`);
    }
    const proxy = withRole(cluster, 'proxy')[0]!;
    const res = await fetch(`http://${proxy.address}:${cluster.proxy.httpPort}${cluster.application.healthPath}`, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200);
    const base = `http://${proxy.address}:${cluster.proxy.httpPort}`;
    const created = await fetch(`${base}/api/tickets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'installed with no mirror' }),
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(created.status, 201);
    const { id } = (await created.json()) as { id: number };
    const back = await fetch(`${base}/api/tickets/${id}`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(back.status, 200);
    assert.equal(((await back.json()) as { title: string }).title, 'installed with no mirror');

    const again = await vigil(['apply', '-c', cfg]);
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /apply: no change/);
    const doctor = await vigil(['doctor', '-c', cfg]);
    assert.equal(doctor.code, 0, doctor.out);
  });
});
