import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ActiveRecord } from '../model/ha.ts';
import { Agent } from './agent.ts';
import type { ServiceRunner, ServiceState } from './services.ts';

/** In-memory services and etcd: the agent's own logic, not the components' behaviour. */
function harness(node = 'app1') {
  let now = 0;
  let record: ActiveRecord | null = null;
  let etcdUp = true;
  let running = false;
  const log: string[] = [];
  const services: ServiceRunner = {
    start: async () => void (running = true),
    stop: async () => void (running = false),
    states: async (): Promise<ServiceState[]> => [{ name: 'app', running }],
  };
  const agent = new Agent(
    {
      node,
      confirm: async () => {
        if (!etcdUp) throw new Error('etcd unreachable');
        return { record, sentAtMs: now };
      },
      services,
      appHealth: async () => running,
      now: () => now,
      log: (e) => log.push(e),
    },
    { leaseMs: 3000 },
  );
  const rec = (n: string, epoch: number): ActiveRecord => ({ node: n, epoch, since: '', reason: 'test' });
  return {
    agent,
    log,
    set: (r: ActiveRecord | null) => void (record = r),
    rec,
    etcd: (up: boolean) => void (etcdUp = up),
    advance: (ms: number) => void (now += ms),
    running: () => running,
    crash: () => void (running = false),
  };
}

test('starts the services when its machine is active and serves once healthy', async () => {
  const h = harness();
  h.set(h.rec('app1', 1));
  await h.agent.tick();
  assert.equal(h.running(), true);
  assert.equal(h.agent.roleOk(), true);
});

test('a standby keeps its services stopped and answers no to the role check', async () => {
  const h = harness('app2');
  h.set(h.rec('app1', 1));
  await h.agent.tick();
  assert.equal(h.running(), false);
  assert.equal(h.agent.roleOk(), false);
});

test('stops when the record moves to another machine', async () => {
  const h = harness();
  h.set(h.rec('app1', 1));
  await h.agent.tick();
  h.set(h.rec('app2', 2));
  await h.agent.tick();
  assert.equal(h.running(), false);
  assert.equal(h.agent.roleOk(), false);
});

test('fences itself when it cannot confirm its role within the lease', async () => {
  const h = harness();
  h.set(h.rec('app1', 1));
  await h.agent.tick();
  h.etcd(false);
  h.advance(2900);
  await h.agent.tick();
  assert.equal(h.running(), true, 'still inside the lease');
  h.advance(200);
  await h.agent.tick();
  assert.equal(h.running(), false, 'past the lease: stopped by itself');
  assert.equal(h.agent.roleOk(), false);
  assert.ok(h.log.includes('self-fence'));
  h.etcd(true);
  h.advance(100);
  await h.agent.tick();
  assert.equal(h.running(), true, 'confirmed again: serves again at the same epoch');
});

test('a fence at a newer epoch keeps it stopped until a record at that epoch or later names it', async () => {
  const h = harness();
  h.set(h.rec('app1', 3));
  await h.agent.tick();
  await h.agent.fence(4);
  assert.equal(h.running(), false, 'the record still names app1 at epoch 3, but the fence forbids it');
  h.set(h.rec('app2', 4));
  await h.agent.tick();
  assert.equal(h.running(), false);
  h.set(h.rec('app1', 5));
  await h.agent.tick();
  assert.equal(h.running(), true);
});

test('a watch hint about a newer epoch elsewhere stops serving before any confirmation', async () => {
  const h = harness();
  h.set(h.rec('app1', 1));
  await h.agent.tick();
  h.etcd(false); // the confirmation cannot come, the hint alone must be enough to stop
  h.agent.hint(h.rec('app2', 2));
  await h.agent.tick();
  assert.equal(h.running(), false);
});

test('a service that dies while active is not restarted in place: the machine fails its checks instead', async () => {
  const h = harness();
  h.set(h.rec('app1', 1));
  await h.agent.tick();
  h.crash();
  await h.agent.tick();
  assert.equal(h.running(), false, 'not restarted at the same epoch');
  assert.equal(h.agent.roleOk(), false, 'the role check fails, so the proxy and the observer see it');
  assert.ok(h.log.includes('service-died'));
  h.set(h.rec('app1', 2)); // activated again by the observer, at a new epoch
  await h.agent.tick();
  assert.equal(h.running(), true);
});

test("the proxy's role check asks the application afresh", async () => {
  const h = harness();
  h.set(h.rec('app1', 1));
  await h.agent.tick();
  assert.equal(await h.agent.roleCheck(), true);
  h.crash(); // the application is gone; no cycle has run since
  assert.equal(h.agent.roleOk(), true, 'the cached answer is a cycle old');
  assert.equal(await h.agent.roleCheck(), false, 'the fresh check sees it at once');
});
