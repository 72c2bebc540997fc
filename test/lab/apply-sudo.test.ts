/**
 * `vigil init` and `vigil apply` as a user other than root, through real sudo: the bare machines
 * get an account `vigil-admin` with a password and a rule in /etc/sudoers.d for password-less
 * sudo (`vigil lab up --bare --ssh-user`), and the cluster file names that user. Then:
 *   - without its sudo rule on one machine, init stops and writes no cluster file; with it, init
 *     installs the admin key for that user;
 *   - without its sudo rule on one machine, apply stops before it changes anything, naming the
 *     machine and the rule to add;
 *   - with it, apply brings the machines to a cluster, logging in only as vigil-admin; what it
 *     writes belongs to root; a second apply changes nothing; doctor finds nothing wrong.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rename, stat } from 'node:fs/promises';
import { PATHS } from '../../src/layout/paths.ts';
import { withRole } from '../../src/config/schema.ts';
import { labUpBare } from '../../src/lab/bare.ts';
import { labDown, openLab } from '../../src/lab/lab.ts';
import { LAB_DIR, clusterFilePath, hostPathOf } from '../../src/lab/paths.ts';
import { vigil } from './run-vigil.ts';
import { unitJournal } from './journal.ts';

const USER = 'vigil-admin';

describe('init and apply as a user with password-less sudo', () => {
  const cfg = clusterFilePath();
  const rule = (m: string) => hostPathOf(m, '/etc/sudoers.d/vigil');

  let answers: string;

  before(async () => {
    await labDown();
    answers = await labUpBare({ topology: 'pair' }, (l) => console.log(`# lab: ${l}`), { sshUser: USER });
  });
  after(async () => {
    await labDown();
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

  it("apply makes a cluster logging in only as the user; what it writes is root's; a second apply changes nothing", async () => {
    const r = await vigil(['apply', '-c', cfg]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /cluster verified/);
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

    const again = await vigil(['apply', '-c', cfg]);
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /apply: no change/);
    const doctor = await vigil(['doctor', '-c', cfg]);
    assert.equal(doctor.code, 0, doctor.out);
  });
});
