/** apply --offline's admin half: the bundle verified, only its package sets' verified bytes kept; and apt's options, run through the real apt-get. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle } from '../airgap/bundle.ts';
import { REPO_FILE, type RepoInfo } from '../airgap/debian.ts';
import { partName } from '../airgap/format.ts';
import { initKeys } from '../airgap/keys.ts';
import { run } from '../util/exec.ts';
import { VigilError } from '../util/errors.ts';
import { notInRepo, offlineAptOptions, offlineInstallCommand, offlineProblem, openOfflineBundle, repoFor } from './offline.ts';

const info: RepoInfo = {
  format: 'vigil-airgap-debian/1',
  release: 'debian/13',
  arch: 'amd64',
  packages: ['haproxy'],
  source: 'http://127.0.0.1/',
  index: 'none',
  base: 'status file',
  count: 2,
};

async function bundleWith(files: Record<string, string>): Promise<{ dir: string; bundle: string; trust: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-offline-'));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(dir, 'in', path, '..'), { recursive: true });
    await writeFile(join(dir, 'in', path), text);
  }
  await initKeys(join(dir, 'k.key'), join(dir, 'trust.json'));
  await createBundle({ dir: join(dir, 'in'), keyPath: join(dir, 'k.key'), out: join(dir, 'bundle') });
  return { dir, bundle: join(dir, 'bundle'), trust: join(dir, 'trust.json') };
}

const repoFiles = {
  'debian-13/Packages':
    'Package: haproxy\nVersion: 3.0\nFilename: ./haproxy_3.0_amd64.deb\n\nPackage: exim4\nVersion: 4\nProvides: mail-transport-agent\nFilename: ./exim4_4_amd64.deb\n',
  'debian-13/haproxy_3.0_amd64.deb': 'haproxy',
  'debian-13/exim4_4_amd64.deb': 'exim4',
  [`debian-13/${REPO_FILE}`]: JSON.stringify(info),
  'patches/kb1.msu': 'a patch the import places; apply keeps none of it',
};

test('the bundle is verified, and only its package sets are kept: what each offers, what a machine lacks', async () => {
  const b = await bundleWith(repoFiles);
  const work = join(b.dir, 'work');
  const lines: string[] = [];
  const src = await openOfflineBundle(b.bundle, b.trust, work, (l) => lines.push(l));
  assert.match(lines.at(-1)!, /offline: bundle [0-9a-f]+ sequence 1 verified; package sets: debian-13 \(debian\/13 amd64, 2 packages\)/);
  assert.deepEqual(await readdir(join(work, 'offline')), ['debian-13'], 'the patch is verified, not kept');
  const repo = src.repos[0]!;
  assert.deepEqual(
    repo.files.map((f) => f.name),
    ['Packages', 'exim4_4_amd64.deb', 'haproxy_3.0_amd64.deb'],
  );
  assert.equal(await readFile(join(repo.local, 'haproxy_3.0_amd64.deb'), 'utf8'), 'haproxy');
  assert.deepEqual(notInRepo(repo, ['haproxy', 'mail-transport-agent', 'socat']), ['socat']);
  assert.throws(
    () => repoFor(src, 'db1', 'debian/12'),
    /db1, step packages: runs debian\/12; the bundle \S+ sequence 1 at \S+ carries package sets for debian\/13 only/,
  );
  assert.equal(offlineProblem(src, 'observer', 'debian/13', ['haproxy', 'mail-transport-agent']), null);
  const lacks = offlineProblem(src, 'observer', 'debian/13', ['haproxy', 'socat'])!;
  assert.equal(lacks.code, 'APPLY');
  assert.match(
    lacks.message,
    /observer, step packages: the bundle [0-9a-f]+ sequence 1 at \S+ has no package socat for debian\/13 \(its set debian-13 has 2 packages\); nothing was installed/,
  );
  assert.match(lacks.message, /add socat to packages= of the sources file's deb line/);
  assert.match(offlineProblem(src, 'db1', 'debian/12', ['postgresql-15'])!.message, /carries package sets for debian\/13 only/);
});

test('a tampered bundle is refused before anything is kept; one without a package set is named', async () => {
  const b = await bundleWith(repoFiles);
  const part = join(b.bundle, partName(1));
  const bytes = await readFile(part);
  bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 1;
  await writeFile(part, bytes);
  await assert.rejects(
    openOfflineBundle(b.bundle, b.trust, join(b.dir, 'work'), () => {}),
    (e: VigilError) => e.code === 'AIRGAP_TAMPERED',
  );

  const none = await bundleWith({ 'patches/kb1.msu': 'x' });
  await assert.rejects(
    openOfflineBundle(none.bundle, none.trust, join(none.dir, 'work'), () => {}),
    (e: VigilError) => {
      assert.equal(e.code, 'APPLY');
      assert.match(e.message, /carries no package set[\s\S]*add a `deb` line to the sources file/);
      return true;
    },
  );
});

test("apt, run with apply's options, reads only the staged set: none of the machine's own sources", async (t) => {
  if ((await run('sh', ['-c', 'command -v apt-get'], { allowFail: true })).code !== 0) return t.skip('apt-get is not installed');
  const dir = await mkdtemp(join(tmpdir(), 'vigil-offline-apt-'));
  await mkdir(join(dir, 'lists', 'partial'), { recursive: true });
  await writeFile(join(dir, 'sources.list'), `deb [trusted=yes] file:${dir} ./\n`);
  // --print-uris downloads nothing and changes nothing: it says where apt would read indexes from.
  const r = await run('apt-get', [...offlineAptOptions(dir), 'update', '--print-uris'], { allowFail: true });
  assert.equal(r.code, 0, r.stderr);
  const uris = [...r.stdout.matchAll(/^'([^']+)'/gm)].map((m) => m[1]!);
  assert.ok(uris.length > 0, r.stdout);
  for (const u of uris) assert.ok(u.startsWith(`file:${dir}/`), `apt would read ${u}`);
  assert.deepEqual(offlineInstallCommand(['haproxy'], true).slice(0, 4), ['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', '-o']);
  assert.ok(offlineInstallCommand(['haproxy'], true).includes('-s'));
});
