/**
 * The artifact, built and installed under a temporary root as apply would under /, run with its
 * own copy of node from another directory with a bare environment (no NODE_PATH, no
 * NODE_OPTIONS, HOME elsewhere): nothing can come from this checkout. The root is not /opt/vigil,
 * so this also shows the bundle finds its data files relative to itself.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VIGIL_INSTALL } from '../layout/units.ts';
import { rejectionOf } from '../testing/helpers.ts';
import { createKeyPair, knownHostLine } from '../sync/keys.ts';
import { REFUSED_EXIT, REFUSED_PREFIX } from '../sync/protocol.ts';
import { createClusterCa, issueCertificate, writePki } from '../pki/ca.ts';
import { MANIFEST_TARGET, artifactArch, buildArtifact, type Artifact } from './artifact.ts';

const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/** Loopback addresses for a cluster nobody runs: etcd (observer) and SSH get "connection refused". */
const NET = '127.87.0';
const SECRETS = ['postgresPassword', 'replicationPassword', 'appDbPassword', 'patroniRestPassword'].map((k) => `${k}: Tt7-artifact-test-${k}\n`).join('');

let tmp: string;
let artifact: Artifact;
let buildMs: number;
/** <tmp>/root, standing for / on a target. */
let root: string;
let cwd: string;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node <file> ...args` with the installed node, from `cwd`, in a bare environment. */
function run(file: string, args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<Result> {
  return new Promise((done, fail) => {
    const child = spawn(join(root, VIGIL_INSTALL.node), [join(root, file), ...args], {
      cwd,
      env: { PATH: '/usr/bin:/bin', HOME: cwd, LANG: 'C.UTF-8', ...env },
      timeout: timeoutMs,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

/** A cluster directory with the example's cluster file (addresses edited by `edit`) and a secrets file. */
async function clusterDir(name: string, edit = (s: string) => s): Promise<string> {
  const dir = join(tmp, name);
  await mkdir(dir);
  await writeFile(join(dir, 'vigil.yaml'), edit(await readFile(join(REPO, 'examples/distributed.yaml'), 'utf8')));
  await writeFile(join(dir, 'vigil.secrets.yaml'), SECRETS, { mode: 0o600 });
  return join(dir, 'vigil.yaml');
}

/** True when nothing listens on address:port (the premise of the "connection refused" checks). */
function refused(address: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const s = connect({ host: address, port, timeout: 2000 });
    s.on('connect', () => (s.destroy(), done(false)));
    s.on('timeout', () => (s.destroy(), done(false)));
    s.on('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED'));
  });
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'vigil-artifact-'));
  const started = performance.now();
  artifact = await buildArtifact(join(tmp, 'build'));
  buildMs = performance.now() - started;
  root = join(tmp, 'root');
  for (const f of artifact.files) {
    const dest = join(root, f.target);
    await mkdir(dirname(dest), { recursive: true });
    await copyFile(f.source, dest);
    await chmod(dest, f.mode);
  }
  cwd = join(tmp, 'elsewhere');
  await mkdir(cwd);
});

after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

test('the artifact: node, the three bundles, the proto files, a manifest; sorted, with digests and sets', async (t) => {
  const total = artifact.files.reduce((n, f) => n + f.size, 0);
  t.diagnostic(
    `${artifact.version} ${artifact.arch}: ${artifact.files.length} files, ${(total / 2 ** 20).toFixed(1)} MiB, built in ${(buildMs / 1000).toFixed(2)} s`,
  );
  const targets = artifact.files.map((f) => f.target);
  assert.deepEqual(targets, [...targets].sort());
  for (const t of [
    VIGIL_INSTALL.node,
    VIGIL_INSTALL.entry,
    VIGIL_INSTALL.receiver,
    VIGIL_INSTALL.refapp,
    MANIFEST_TARGET,
    '/opt/vigil/proto/etcd3/rpc.proto',
    '/opt/vigil/proto/etcd3/kv.proto',
    '/opt/vigil/proto/etcd3/auth.proto',
  ])
    assert.ok(targets.includes(t), `${t} is in the artifact`);
  assert.ok(targets.every((t) => t.startsWith(`${VIGIL_INSTALL.dir}/`)));
  assert.deepEqual(
    artifact.files.filter((f) => f.set === 'refapp').map((f) => f.target),
    [VIGIL_INSTALL.refapp],
  );
  const node = artifact.files.find((f) => f.target === VIGIL_INSTALL.node)!;
  assert.equal(node.source, process.execPath);
  assert.equal(node.mode, 0o755);
  assert.match(artifact.version, /^\d+\.\d+\.\d+\+[0-9a-f]{12}$/);
  const uname = await new Promise<string>((done) => {
    const c = spawn('uname', ['-m']);
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', () => done(out.trim()));
  });
  assert.equal(artifact.arch, uname);

  const manifest = JSON.parse(await readFile(join(root, MANIFEST_TARGET), 'utf8')) as {
    version: string;
    arch: string;
    files: { target: string; size: number; sha256: string; set: string }[];
  };
  assert.equal(manifest.version, artifact.version);
  assert.equal(manifest.arch, artifact.arch);
  assert.deepEqual(
    manifest.files.map(({ target, size, sha256, set }) => ({ target, size, sha256, set })),
    artifact.files.filter((f) => f.target !== MANIFEST_TARGET).map(({ target, size, sha256, set }) => ({ target, size, sha256, set })),
  );
});

test("the CLI's bundle holds the CLI, agent and observer, and no module of the lab, the reference application or the test support", (t) => {
  const inputs = (target: string) => artifact.bundles.find((b) => b.target === target)!.inputs.filter((i) => i.startsWith('src/'));
  const cli = inputs(VIGIL_INSTALL.entry);
  t.diagnostic(`${VIGIL_INSTALL.entry}: ${cli.length} modules of src/`);
  for (const m of ['src/cli/main.ts', 'src/agent/daemon.ts', 'src/observer/daemon.ts', 'src/apply/apply.ts', 'src/doctor/doctor.ts'])
    assert.ok(cli.includes(m), `${m} is in the CLI's bundle`);
  const outside = (list: string[], re: RegExp) => list.filter((i) => re.test(i));
  assert.deepEqual(outside(cli, /^src\/(lab|refapp|testing)\//), []);
  assert.deepEqual(outside(inputs(VIGIL_INSTALL.receiver), /^src\/(lab|refapp|testing)\//), []);
  const refapp = inputs(VIGIL_INSTALL.refapp);
  for (const m of ['src/refapp/entry.ts', 'src/refapp/server.ts']) assert.ok(refapp.includes(m), `${m} is in the reference application's bundle`);
  assert.deepEqual(outside(refapp, /^src\/(lab|testing|agent|observer|apply|doctor)\//), []);
});

test('the same sources give the same bytes, whatever the current directory', async () => {
  const here = process.cwd();
  process.chdir(tmp);
  let again: Artifact;
  try {
    again = await buildArtifact(join(tmp, 'build-again'));
  } finally {
    process.chdir(here);
  }
  const digests = (a: Artifact) => a.files.map((f) => `${f.target} ${f.size} ${f.sha256}`);
  assert.deepEqual(digests(again), digests(artifact));
  assert.equal(again.version, artifact.version);
});

test('the bundles name no path of this checkout and load nothing from node_modules', async () => {
  for (const target of [VIGIL_INSTALL.entry, VIGIL_INSTALL.receiver, VIGIL_INSTALL.refapp]) {
    const text = await readFile(join(root, target), 'utf8');
    assert.ok(!text.includes(REPO), `${target} names ${REPO}`);
    // Comments and esbuild's module keys say "node_modules/..."; no require, import or file load may.
    assert.doesNotMatch(text, /\b(require|import|loadSync|readFileSync|readFile)\s*\(\s*[`'"][^`'"]*node_modules/);
    assert.doesNotMatch(text, /\b(require|import)\s*\(\s*[`'"](\/|\.\.?\/)/, `${target} loads a file by path`);
  }
});

test('vigil --version and --help run with the copied node', async () => {
  const version = await run(VIGIL_INSTALL.entry, ['--version']);
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  const help = await run(VIGIL_INSTALL.entry, ['--help']);
  assert.equal(help.code, 0, help.stderr);
  for (const command of ['validate', 'render', 'status', 'agent', 'observer']) assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'));
  assert.doesNotMatch(help.stdout, /^ {2}lab /m);
  assert.doesNotMatch(help.stdout, /--lab/);
});

test('the lab and the reference application are not commands of the installed vigil; --lab says where it works', async () => {
  const lab = await run(VIGIL_INSTALL.entry, ['lab', 'status']);
  assert.equal(lab.code, 1);
  assert.match(lab.stderr, /unknown command 'lab'/);
  const refapp = await run(VIGIL_INSTALL.entry, ['refapp', '--config', '/nonexistent']);
  assert.equal(refapp.code, 1);
  assert.match(refapp.stderr, /unknown command 'refapp'/);
  const status = await run(VIGIL_INSTALL.entry, ['status', '--lab']);
  assert.equal(status.code, 1, status.stderr);
  assert.match(status.stderr, /^error \[USAGE\]\n--lab: works only from a Vigil checkout/);
});

test("the reference application's bundle runs with the copied node and reads its properties file", async () => {
  const help = await run(VIGIL_INSTALL.refapp, ['--help']);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: vigil-refapp \[options\]/);
  assert.match(help.stdout, /--config <file>/);
  const missing = await run(VIGIL_INSTALL.refapp, ['--config', join(tmp, 'no-such.properties')]);
  assert.equal(missing.code, 1, missing.stderr);
  assert.match(missing.stderr, /^error \[CONFIG_READ\]\n.*no-such\.properties: cannot read the file \(ENOENT\)/);
});

test('vigil validate and render work on the example', async () => {
  const file = await clusterDir('example');
  const validate = await run(VIGIL_INSTALL.entry, ['validate', file]);
  assert.equal(validate.code, 0, validate.stderr);
  assert.match(validate.stdout, /is valid: cluster servicedesk, topology distributed, 5 machines/);

  const out = join(tmp, 'rendered');
  const render = await run(VIGIL_INSTALL.entry, ['render', '-c', file, '--out', out]);
  assert.equal(render.code, 0, render.stderr);
  assert.match(render.stdout, /\d+ files for 5 machines/);
  assert.deepEqual((await readdir(out)).filter((e) => !e.startsWith('.')).sort(), ['app1', 'app2', 'db1', 'db2', 'observer']);
  const written = await readdir(join(out, 'observer'), { recursive: true });
  assert.ok(
    written.some((p) => p.endsWith('haproxy.cfg')),
    `haproxy.cfg among ${written.join(', ')}`,
  );
});

test('vigil status loads etcd3 (its proto files from the artifact) and dials etcd over gRPC', async (t) => {
  if (!(await refused(`${NET}.10`, 2379))) return t.skip(`something answers on ${NET}.10:2379`);
  const file = await clusterDir('loopback', (s) => s.replaceAll('10.0.1.', `${NET}.`));
  // etcd asks for the admin's certificate: status loads it from pki/ beside the cluster file first.
  const ca = await createClusterCa({ clusterName: 'loopback' });
  const admin = await issueCertificate(ca, { commonName: 'admin', ipAddresses: [], usage: 'client' });
  await writePki(join(dirname(file), 'pki'), { 'ca.pem': ca.certPem, 'admin.pem': admin.certPem, 'admin.key': admin.keyPem });
  // grpc-js's own trace shows the dial; the final message may name the last retry's deadline instead.
  const r = await run(VIGIL_INSTALL.entry, ['status', '-c', file], { GRPC_TRACE: 'subchannel', GRPC_VERBOSITY: 'DEBUG' });
  assert.equal(r.code, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /unexpected error|Cannot find module|ENOENT|\.proto|is not defined|is not supported/);
  assert.match(r.stderr, /error \[CLUSTER_UNREACHABLE\]\nhttps:\/\/127\.87\.0\.10:2379: etcd does not answer/);
  assert.match(r.stderr, /CONNECTING -> TRANSIENT_FAILURE with error "Error: connect ECONNREFUSED 127\.87\.0\.10:2379"/);
});

test('vigil preflight loads ssh2 (without its native addons) and dials SSH', async (t) => {
  if (!(await refused(`${NET}.10`, 22))) return t.skip(`something answers on ${NET}.10:22`);
  const file = await clusterDir('ssh', (s) => s.replaceAll('10.0.1.', `${NET}.`));
  await mkdir(join(dirname(file), 'ssh'));
  const key = await createKeyPair(join(dirname(file), 'ssh/id_ed25519'), 'artifact-test');
  // Pinned host keys, so the SSH client gets as far as connecting (any key will do: nothing answers).
  const hosts = [10, 11, 12, 21, 22].map((n) => knownHostLine(`${NET}.${n}`, 22, key));
  await writeFile(join(dirname(file), 'vigil.known_hosts'), `${hosts.join('\n')}\n`);
  const r = await run(VIGIL_INSTALL.entry, ['preflight', '-c', file]);
  assert.notEqual(r.code, 0);
  assert.doesNotMatch(r.stdout + r.stderr, /unexpected error|Cannot find module|is not defined|is not supported/);
  assert.match(r.stdout, /observer \(root@127\.87\.0\.10:22\): cannot reach SSH: connection refused/);
});

test('the receiver bundle starts and refuses a session without a push command', async () => {
  const r = await run(VIGIL_INSTALL.receiver, ['--peer', 'app1'], { VIGIL_SYNC_ACCEPT_FILE: join(tmp, 'no-accept-file') });
  assert.equal(r.code, REFUSED_EXIT, r.stderr);
  assert.equal(r.stderr, `${REFUSED_PREFIX} no command: this key only carries file-sync pushes\n`);
});

test("an admin machine of another architecture is the admin's to change: APPLY with its fix, not a bug", async () => {
  assert.equal(artifactArch('x64'), 'x86_64');
  assert.equal(artifactArch('arm64'), 'aarch64');
  const err = await rejectionOf(Promise.resolve().then(() => artifactArch('ppc64')));
  assert.equal(err.code, 'APPLY');
  assert.match(err.message, /Node\.js for ppc64.*\n {2}fix: run `vigil apply` from an x86-64 or arm64 Linux machine/);
});
