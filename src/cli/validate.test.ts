import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { VigilError } from '../util/errors.ts';
import { registerValidate } from './validate.ts';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
const PASSWORD = 'Ww2-unique-test-password';

/** Runs `vigil validate ...args` and returns what it printed. */
async function run(...args: string[]): Promise<string> {
  const program = new Command('vigil').exitOverride();
  registerValidate(program);
  let out = '';
  const write = process.stdout.write;
  process.stdout.write = ((chunk: string) => ((out += chunk), true)) as typeof process.stdout.write;
  try {
    await program.parseAsync(['node', 'vigil', 'validate', ...args]);
  } finally {
    process.stdout.write = write;
  }
  return out;
}

async function withCluster(example: string, body: (file: string) => Promise<void>, mode = 0o600): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-validate-'));
  try {
    await copyFile(join(EXAMPLES, example), join(dir, 'vigil.yaml'));
    const keys = ['postgresPassword', 'replicationPassword', 'appDbPassword', 'patroniRestPassword'];
    await writeFile(join(dir, 'vigil.secrets.yaml'), keys.map((k) => `${k}: ${PASSWORD}-${k}\n`).join(''), { mode });
    await body(join(dir, 'vigil.yaml'));
  } finally {
    await rm(dir, { recursive: true });
  }
}

test('validate prints a one-paragraph summary', async () => {
  await withCluster('pair.yaml', async (file) => {
    const out = await run(file);
    assert.match(
      out,
      /is valid: cluster servicedesk, topology pair, 3 machines: observer 10\.0\.0\.10 \(etcd, proxy, observer\), app1 10\.0\.0\.11 \(app, db\)/,
    );
    assert.match(out, /1 etcd member \(observer\), surviving 0 member failures/);
    assert.match(out, /synchronous replication/);
    assert.equal(out.trim().split('\n').length, 1);
  });
});

test('validate --json prints the resolved cluster and never a secret', async () => {
  await withCluster('distributed.yaml', async (file) => {
    const out = await run(file, '--json');
    const c = JSON.parse(out) as { machines: { name: string; roles: string[] }[]; timers: { ttlSeconds: number } };
    assert.deepEqual(c.machines.find((m) => m.name === 'db1')?.roles, ['db']);
    assert.equal(c.timers.ttlSeconds, 10);
    assert.ok(!out.includes(PASSWORD));
  });
});

test('validate throws the VigilError for a bad secrets file mode', async () => {
  await withCluster(
    'pair.yaml',
    async (file) => {
      await assert.rejects(run(file), (err: unknown) => err instanceof VigilError && err.code === 'SECRETS_INVALID' && !err.message.includes(PASSWORD));
    },
    0o644,
  );
});

test('validate warns on stderr, with file and line, when backend TLS verification is off; the summary still prints', async () => {
  await withCluster('pair.yaml', async (file) => {
    await appendFile(file, 'application:\n  backendTls:\n    verify: false\n');
    let err = '';
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => ((err += chunk), true)) as typeof process.stderr.write;
    let out: string;
    try {
      out = await run(file);
    } finally {
      process.stderr.write = write;
    }
    assert.match(out, /is valid/);
    assert.match(err, /^warning: .*vigil\.yaml:\d+ application\.backendTls\.verify: .*verify none/);
    assert.match(err, /fix: remove `verify: false`/);
  });
});
