import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { activationConfig, activationHook, describeActivation } from './activation.ts';

test('url form: the call is POSTed as JSON; a 2xx confirms, another status fails naming it', async () => {
  const bodies: unknown[] = [];
  let status = 200;
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (d: Buffer) => (text += d.toString()));
    req.on('end', () => {
      bodies.push(JSON.parse(text));
      res.writeHead(status).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/vigil/activation`;
  try {
    const hook = activationHook({ url, timeoutMs: 2000 });
    await hook.activate(4, 2500);
    await hook.deactivate();
    assert.deepEqual(bodies, [{ active: true, epoch: 4, validForMs: 2500 }, { active: false }]);
    status = 503;
    await assert.rejects(hook.deactivate(), /answered 503/);
  } finally {
    server.close();
  }
});

test('command form: the call on stdin and in the environment; a renewal within half the validity is not sent; exit 0 confirms, another exit fails, a hang fails at the deadline', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-activation-'));
  try {
    const out = join(dir, 'calls');
    const script = join(dir, 'hook.mjs');
    await writeFile(
      script,
      [
        "import { appendFileSync, readFileSync } from 'node:fs';",
        'const input = readFileSync(0, "utf8").trim();',
        `appendFileSync(${JSON.stringify(out)}, JSON.stringify({ input, active: process.env.VIGIL_ACTIVE, epoch: process.env.VIGIL_EPOCH, valid: process.env.VIGIL_VALID_FOR_MS }) + '\\n');`,
        "if (process.env.HOOK_MODE === 'fail') { console.error('background work still running'); process.exit(3); }",
        "if (process.env.HOOK_MODE === 'hang') setTimeout(() => {}, 60000);",
      ].join('\n'),
    );
    const hook = activationHook({ command: [process.execPath, script], timeoutMs: 5000 });
    await hook.activate(7, 60_000);
    // A renewal at the same epoch within half the validity given: no process.
    await hook.activate(7, 60_000);
    await hook.deactivate();
    const calls = (await readFile(out, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, string>);
    assert.deepEqual(calls, [
      { input: '{"active":true,"epoch":7,"validForMs":60000}', active: '1', epoch: '7', valid: '60000' },
      { input: '{"active":false}', active: '0', epoch: '', valid: '' },
    ]);
    process.env['HOOK_MODE'] = 'fail';
    await assert.rejects(hook.deactivate(), /exited with 3: background work still running/);
    process.env['HOOK_MODE'] = 'hang';
    await assert.rejects(activationHook({ command: [process.execPath, script], timeoutMs: 300 }).deactivate(), /timed out after 300 ms/);
  } finally {
    delete process.env['HOOK_MODE'];
    await rm(dir, { recursive: true, force: true });
  }
});

test('file form: activation written with its validity on the wall clock; a deactivation waits for the acknowledgement of its own number', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vigil-activation-'));
  try {
    const file = join(dir, 'activation.json');
    let wall = 1_000_000;
    const hook = activationHook({ file, timeoutMs: 2000 }, { nowMs: () => wall, pollMs: 10 });
    await hook.activate(3, 2500);
    const first = JSON.parse(await readFile(file, 'utf8')) as { active: boolean; epoch: number; validUntilMs: number; seq: number };
    assert.deepEqual({ ...first, seq: undefined }, { active: true, epoch: 3, validUntilMs: 1_002_500, seq: undefined });
    wall += 100;
    // The application acknowledges what it read, once its background work stopped.
    const acknowledge = (async () => {
      for (;;) {
        const now = JSON.parse(await readFile(file, 'utf8')) as { active: boolean; seq: number };
        if (!now.active) return writeFile(`${file}.ack`, JSON.stringify({ seq: now.seq }));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await hook.deactivate();
    await acknowledge;
    const second = JSON.parse(await readFile(file, 'utf8')) as { active: boolean; seq: number };
    assert.equal(second.active, false);
    assert.ok(second.seq > first.seq);
    // An older acknowledgement (the last deactivation's) does not confirm the next one.
    await assert.rejects(
      activationHook({ file, timeoutMs: 200 }, { nowMs: () => wall + 10_000 }).deactivate(),
      /did not acknowledge the deactivation .* within 200 ms/,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('activationConfig takes the one form given; describeActivation names it', () => {
  assert.deepEqual(activationConfig({ command: ['/bin/true'], timeoutMs: 100 }), { command: ['/bin/true'], timeoutMs: 100 });
  assert.equal(describeActivation(activationConfig({ file: '/run/a.json', timeoutMs: 100 })), 'file /run/a.json');
  assert.throws(() => activationConfig({ timeoutMs: 100 }), /one of url, command or file/);
});
