import assert from 'node:assert/strict';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileOf, PAIR_LINES, secretsFixture, tempDir } from '../testing/clusters.ts';
import { loadCluster, loadSecrets } from '../config/load.ts';
import { verifyPassword } from '../dashboard/users.ts';
import { changeDashboardUser, editDashboardUsers, listDashboardUsers } from './dashboard-users.ts';

const HASH = `scrypt$32768$8$1$${'a'.repeat(22)}$${'b'.repeat(43)}`;

describe('vigil dashboard user', () => {
  let dir: string;
  let clusterFile: string;
  before(async () => {
    dir = await tempDir();
    clusterFile = join(dir, 'vigil.yaml');
    await writeFile(clusterFile, fileOf(...PAIR_LINES));
    await writeFile(join(dir, 'vigil.secrets.yaml'), `# the secrets of the test cluster\n${stringify(secretsFixture())}`, { mode: 0o600 });
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('set adds a user with a generated password (its file mode 600, only the hash in the secrets file), keeps the comments, and replaces a role; remove removes', async () => {
    const secretsFile = join(dir, 'vigil.secrets.yaml');
    const before_ = await readFile(secretsFile, 'utf8');
    const comment = before_.split('\n').find((l) => l.startsWith('#'));
    const r = await changeDashboardUser(clusterFile, { kind: 'set', name: 'ann', role: 'viewer', password: null });
    assert.equal(r.passwordFile, join(dir, 'dashboard-ann.password'));
    assert.equal((await stat(r.passwordFile!)).mode & 0o777, 0o600);
    assert.equal((await stat(secretsFile)).mode & 0o777, 0o600);
    const password = (await readFile(r.passwordFile!, 'utf8')).trim();
    const text = await readFile(secretsFile, 'utf8');
    assert.ok(!text.includes(password), 'the password itself is not in the secrets file');
    if (comment) assert.ok(text.includes(comment), 'comments are kept');
    const secrets = await loadSecrets(await loadCluster(clusterFile));
    const ann = secrets.dashboardUsers!.find((u) => u.name === 'ann')!;
    assert.equal(ann.role, 'viewer');
    assert.equal(await verifyPassword(ann.passwordHash, password), true);
    await changeDashboardUser(clusterFile, { kind: 'set', name: 'ann', role: 'operator', password: 'a long enough password' });
    const again = await loadSecrets(await loadCluster(clusterFile));
    assert.deepEqual(
      again.dashboardUsers!.filter((u) => u.name === 'ann').map((u) => u.role),
      ['operator'],
    );
    assert.equal(await verifyPassword(again.dashboardUsers!.find((u) => u.name === 'ann')!.passwordHash, 'a long enough password'), true);
    assert.ok((await listDashboardUsers(clusterFile)).some((u) => u.name === 'ann' && u.role === 'operator'));
    await changeDashboardUser(clusterFile, { kind: 'remove', name: 'ann' });
    assert.ok(!(await listDashboardUsers(clusterFile)).some((u) => u.name === 'ann'));
  });

  it('a bad name, a bad role, a short password or an unknown user to remove: a clear error, and the file unchanged', async () => {
    const secretsFile = join(dir, 'vigil.secrets.yaml');
    const was = await readFile(secretsFile, 'utf8');
    await assert.rejects(changeDashboardUser(clusterFile, { kind: 'set', name: 'a b', role: 'viewer', password: null }), /"a b" is not a user name/);
    await assert.rejects(
      changeDashboardUser(clusterFile, { kind: 'set', name: 'bob', role: 'root', password: null }),
      /"root" is not a role.*viewer, operator, admin/s,
    );
    await assert.rejects(changeDashboardUser(clusterFile, { kind: 'set', name: 'bob', role: 'viewer', password: 'short' }), /fewer than 12 characters/);
    await assert.rejects(changeDashboardUser(clusterFile, { kind: 'remove', name: 'nobody' }), /has no user "nobody"/);
    assert.equal(await readFile(secretsFile, 'utf8'), was);
  });

  it('editDashboardUsers: adds the list when there is none; refuses a dashboardUsers that is not a list', () => {
    const out = editDashboardUsers('patroniRestPassword: x\n', { kind: 'set', name: 'ann', role: 'admin', passwordHash: HASH }, 'f.yaml');
    assert.match(out, /dashboardUsers:\n {2}- name: ann\n {4}role: admin\n {4}passwordHash: scrypt/);
    assert.throws(() => editDashboardUsers('dashboardUsers: yes\n', { kind: 'remove', name: 'ann' }, 'f.yaml'), /f\.yaml dashboardUsers.*is not a list/s);
  });
});
