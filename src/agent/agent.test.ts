import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ActiveRecord } from '../model/ha.ts';
import { Agent, FenceRefused, type AgentDeps, type AgentMemory } from './agent.ts';
import type { ServiceRunner, ServiceState } from './services.ts';
import type { PeerAnswer } from './ride-out.ts';

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

test('says why it is not active: not confirmed yet, another machine named, fenced, lease run out', async () => {
  const h = harness();
  assert.equal(h.agent.whyNotActive(), 'has not yet confirmed the active record in etcd');
  await h.agent.tick();
  assert.equal(h.agent.whyNotActive(), 'the active record in etcd names no machine');
  h.set(h.rec('app2', 1));
  await h.agent.tick();
  assert.equal(h.agent.whyNotActive(), 'the active record names app2 at epoch 1');
  h.set(h.rec('app1', 2));
  await h.agent.tick();
  assert.equal(h.agent.whyNotActive(), null);
  h.etcd(false);
  h.advance(3500);
  await h.agent.tick();
  assert.equal(h.agent.whyNotActive(), 'no confirmation of the active record for 3500 ms (lease 3000 ms)');
  h.etcd(true);
  await h.agent.fence(3);
  assert.equal(h.agent.whyNotActive(), 'fenced below epoch 3; the record is at epoch 2');
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

/**
 * Two or more agents over one in-memory etcd with claims (src/etcd/serving.ts): the agents'
 * handover logic. That etcd deletes a claim when its lease expires is tested against the real
 * etcd in src/etcd/store.test.ts; here `expire` stands for it.
 */
function cluster(nodes: string[], opts: { rideOut?: boolean } = {}) {
  let now = 0;
  let record: ActiveRecord | null = null;
  const claims = new Map<string, { node: string; epoch: number; since: string }>();
  const cut = new Set<string>();
  /** Agents that cannot reach each other (both ways). */
  const apart = new Set<string>();
  const memories = new Map<string, AgentMemory>();
  const running = new Map(nodes.map((n) => [n, false]));
  let failClaims = false;
  const agents: Map<string, Agent> = new Map(
    nodes.map((node): [string, Agent] => {
      let claimed: number | null = null;
      const agent: Agent = new Agent(
        {
          node,
          confirm: async () => {
            if (cut.has(node)) throw new Error('etcd unreachable');
            return { record, sentAtMs: now, claims: [...claims.values()] };
          },
          hold: {
            get claimed() {
              return claimed;
            },
            claim: async (epoch) => {
              if (cut.has(node) || failClaims) throw new Error('etcd unreachable');
              claims.set(node, { node, epoch, since: '' });
              claimed = epoch;
            },
            release: async () => {
              if (cut.has(node)) throw new Error('etcd unreachable');
              claims.delete(node);
              claimed = null;
            },
          },
          services: {
            start: async () => void running.set(node, true),
            stop: async () => void running.set(node, false),
            states: async () => [{ name: 'app', running: running.get(node)! }],
          },
          appHealth: async () => running.get(node)!,
          ...(opts.rideOut
            ? {
                rideOut: {
                  peers: nodes.filter((n) => n !== node),
                  ask: (epoch: number): Promise<PeerAnswer[]> =>
                    Promise.all(
                      nodes
                        .filter((n) => n !== node)
                        .map(async (peer): Promise<PeerAnswer> =>
                          apart.has(peer) || apart.has(node)
                            ? { peer, granted: false, reason: 'unreachable' }
                            : { peer, ...(await agents.get(peer)!.grantRideOut({ node, epoch })) },
                        ),
                    ),
                },
              }
            : {}),
          remember: async (m) => void memories.set(node, m),
          now: () => now,
          log: () => {},
        },
        { leaseMs: 3000 },
      );
      return [node, agent];
    }),
  );
  const serving = () => nodes.filter((n) => running.get(n) || agents.get(n)!.isActive());
  return {
    agent: (n: string) => agents.get(n)!,
    set: (node: string, epoch: number) => void (record = { node, epoch, since: '', reason: 'test' }),
    cut: (n: string) => void cut.add(n),
    apart: (n: string) => void apart.add(n),
    memory: (n: string) => memories.get(n),
    now: () => now,
    running: (n: string) => running.get(n)!,
    heal: (n: string) => void cut.delete(n),
    expire: (n: string) => void claims.delete(n),
    claims,
    advance: (ms: number) => void (now += ms),
    failClaims: (v: boolean) => void (failClaims = v),
    serving,
  };
}

test('handover: the new machine starts only once the old one has stopped and dropped its claim', async () => {
  const c = cluster(['app1', 'app2']);
  c.set('app1', 1);
  await c.agent('app1').tick();
  await c.agent('app2').tick();
  assert.deepEqual(c.serving(), ['app1']);
  c.set('app2', 2);
  await c.agent('app2').tick(); // the new machine learns first
  assert.deepEqual(c.serving(), ['app1'], 'app2 waits while app1 still claims');
  assert.deepEqual(c.agent('app2').waitingFor, ['app1']);
  assert.equal(c.agent('app2').roleOk(), false);
  assert.equal(c.agent('app2').whyNotActive(), 'waits for app1 to stop serving (handover)');
  await c.agent('app1').tick(); // stops, then drops its claim
  assert.deepEqual(c.serving(), []);
  assert.equal(c.claims.has('app1'), false);
  await c.agent('app2').tick();
  assert.deepEqual(c.serving(), ['app2']);
  assert.deepEqual(c.agent('app2').waitingFor, []);
});

test('handover: an old machine cut off from etcd holds the new one back until its claim expires, by when it has stopped', async () => {
  const c = cluster(['app1', 'app2']);
  c.set('app1', 1);
  await c.agent('app1').tick();
  c.cut('app1');
  c.set('app2', 2);
  for (let ms = 0; ms < 3000; ms += 500) {
    await c.agent('app1').tick();
    await c.agent('app2').tick();
    assert.ok(c.serving().length <= 1, `one machine at most at ${ms} ms: ${c.serving().join(', ')}`);
    c.advance(500);
  }
  assert.equal(c.agent('app1').isActive(), false, 'past its lease the old agent has fenced itself');
  await c.agent('app1').tick();
  assert.deepEqual(c.serving(), [], 'still claimed in etcd: app2 waits');
  c.expire('app1'); // etcd ends app1's lease, which outlives app1's own count
  await c.agent('app2').tick();
  assert.deepEqual(c.serving(), ['app2']);
  c.heal('app1');
  await c.agent('app1').tick();
  assert.deepEqual(c.serving(), ['app2'], 'back, app1 stays a standby');
});

test("handover: a restarted agent is not held back by its own machine's claim", async () => {
  const c = cluster(['app1', 'app2']);
  c.claims.set('app1', { node: 'app1', epoch: 1, since: '' }); // left by the agent process before
  c.set('app1', 1);
  await c.agent('app1').tick();
  assert.deepEqual(c.serving(), ['app1']);
});

test('handover: without its own claim in etcd the machine does not serve', async () => {
  const c = cluster(['app1', 'app2']);
  c.set('app1', 1);
  c.failClaims(true);
  await c.agent('app1').tick();
  assert.deepEqual(c.serving(), [], 'the claim could not be written');
  c.failClaims(false);
  await c.agent('app1').tick();
  assert.deepEqual(c.serving(), ['app1']);
});

test('handover: a fenced machine drops its claim once stopped, and the machine activated in its place starts', async () => {
  const c = cluster(['app1', 'app2']);
  c.set('app1', 1);
  await c.agent('app1').tick();
  c.set('app2', 2);
  await c.agent('app2').tick();
  assert.deepEqual(c.serving(), ['app1']);
  await c.agent('app1').fence(2); // the observer's fence, before app1 read the new record
  assert.equal(c.claims.has('app1'), false);
  await c.agent('app2').tick();
  assert.deepEqual(c.serving(), ['app2']);
});

test('the lease running out stops the services at once, while the cycle still waits on an unanswering etcd', async () => {
  let now = 0;
  let running = false;
  let hang = false;
  const log: string[] = [];
  const agent = new Agent(
    {
      node: 'app1',
      confirm: () => (hang ? new Promise(() => {}) : Promise.resolve({ record: { node: 'app1', epoch: 1, since: '', reason: 'test' }, sentAtMs: now })),
      services: {
        start: async () => void (running = true),
        stop: async () => void (running = false),
        states: async () => [{ name: 'app', running }],
      },
      appHealth: async () => running,
      now: () => now,
      log: (e) => log.push(e),
    },
    { leaseMs: 3000 },
  );
  await agent.tick();
  assert.equal(running, true);
  assert.equal(agent.leaseLeftMs(), 3000);
  hang = true;
  void agent.tick(); // blocked on etcd from here on
  now = 2999;
  await agent.leaseEnded();
  assert.equal(running, true, 'inside the lease nothing happens');
  now = 3000;
  assert.equal(agent.leaseLeftMs(), 0);
  await agent.leaseEnded();
  assert.equal(running, false, 'stopped without waiting for the cycle');
  assert.ok(log.includes('self-fence'));
});

test('a fence for an epoch more than one above the newest seen is refused and changes nothing (M2); a fence is remembered across restarts', async () => {
  const remembered: { highestEpoch: number; fencedBelow: number }[] = [];
  let running = false;
  let record: ActiveRecord = { node: 'app1', epoch: 3, since: '', reason: 'test' };
  const deps = {
    node: 'app1',
    confirm: async () => ({ record, sentAtMs: 0 }),
    services: {
      start: async () => void (running = true),
      stop: async () => void (running = false),
      states: async () => [{ name: 'app', running }],
    },
    appHealth: async () => running,
    now: () => 0,
    log: () => {},
    remember: async (m: { highestEpoch: number; fencedBelow: number }) => void remembered.push(m),
  };
  const agent = new Agent(deps, { leaseMs: 3000 });
  await agent.tick();
  assert.equal(running, true);
  assert.deepEqual(remembered.at(-1), { highestEpoch: 3, fencedBelow: 0 });
  await assert.rejects(agent.fence(Number.MAX_SAFE_INTEGER), FenceRefused);
  await assert.rejects(agent.fence(5), FenceRefused);
  assert.equal(running, true, 'still serving: the refused fence changed nothing');
  await agent.fence(4);
  assert.equal(running, false);
  assert.deepEqual(remembered.at(-1), { highestEpoch: 4, fencedBelow: 4 });

  // A restarted agent with that memory obeys the fence: the record still names it at epoch 3.
  const again = new Agent(deps, { leaseMs: 3000 }, remembered.at(-1));
  await again.tick();
  assert.equal(running, false);
  record = { node: 'app1', epoch: 5, since: '', reason: 'test' };
  await again.tick();
  assert.equal(running, true, 'a record at or above the fence starts it again');
});

/** An app machine with a warm `app` (every machine) and `nginx` (active only), and the application's activation hook. */
function warmHarness(node = 'app1', extra: Partial<AgentDeps> = {}) {
  let now = 0;
  let record: ActiveRecord | null = null;
  const run = { app: false, nginx: false };
  /** What the application believes: active at an epoch until a time, or not. */
  let app: { epoch: number; untilMs: number } | null = null;
  let hookFails = false;
  const calls: string[] = [];
  const log: string[] = [];
  const services: ServiceRunner = {
    start: async (scope = 'all') => {
      run.app = true;
      if (scope === 'all') run.nginx = true;
    },
    stop: async (scope = 'all') => {
      run.nginx = false;
      if (scope === 'all') {
        run.app = false;
        app = null; // a stopped process runs nothing
      }
    },
    states: async () => [
      { name: 'nginx', running: run.nginx, runsOn: 'active' },
      { name: 'app', running: run.app, runsOn: 'every' },
    ],
  };
  const agent = new Agent(
    {
      node,
      confirm: async () => ({ record, sentAtMs: now }),
      services,
      activation: {
        activate: async (epoch, validForMs) => {
          calls.push(`activate ${epoch} ${validForMs}`);
          if (hookFails) throw new Error('connect ECONNREFUSED');
          app = { epoch, untilMs: now + validForMs };
        },
        deactivate: async () => {
          calls.push('deactivate');
          if (hookFails) throw new Error('timeout');
          app = null;
        },
      },
      appHealth: async () => run.app && run.nginx,
      now: () => now,
      log: (e) => log.push(e),
      ...extra,
    },
    { leaseMs: 3000 },
  );
  return {
    agent,
    run,
    calls,
    log,
    appActive: () => (app !== null && now < app.untilMs ? app.epoch : null),
    set: (n: string, epoch: number) => void (record = { node: n, epoch, since: '', reason: 'test' }),
    advance: (ms: number) => void (now += ms),
    hookFails: (v: boolean) => void (hookFails = v),
  };
}

test('warm standby: a standby keeps its `every` services running, inactive, and its role check says no', async () => {
  const h = warmHarness('app2');
  h.set('app1', 1);
  await h.agent.tick();
  assert.deepEqual(h.run, { app: true, nginx: false });
  assert.equal(h.appActive(), null);
  assert.equal(await h.agent.roleCheck(), false);
  await h.agent.tick();
  assert.ok(!h.calls.some((c) => c.startsWith('activate')), 'never activated on a standby');
});

test('warm standby: a warm service with a health check of its own is marked starting, then ready; one without is only running', async () => {
  let started = false;
  const h = warmHarness('app2', { serviceReady: async (name) => (name === 'app' ? started : undefined) });
  h.set('app1', 1);
  await h.agent.tick();
  assert.deepEqual(
    h.agent.services.find((s) => s.name === 'app'),
    { name: 'app', running: true, runsOn: 'every', ready: false },
  );
  started = true;
  await h.agent.tick();
  assert.equal(h.agent.services.find((s) => s.name === 'app')?.ready, true);
  assert.equal(h.agent.services.find((s) => s.name === 'nginx')?.ready, undefined, 'a stopped service is not asked');
  const plain = warmHarness('app2');
  plain.set('app1', 1);
  await plain.agent.tick();
  assert.equal(plain.agent.services.find((s) => s.name === 'app')?.ready, undefined);
});

test('the active machine: an `active` service with a health check of its own (an analytics service) is marked ready or not, and that alone does not take the machine out', async () => {
  let answers = false;
  const asked: string[] = [];
  const h = warmHarness('app1', {
    serviceReady: async (name) => {
      asked.push(name);
      return name === 'nginx' ? answers : undefined;
    },
  });
  h.set('app1', 1);
  await h.agent.tick();
  assert.equal(h.agent.services.find((s) => s.name === 'nginx')?.ready, false);
  assert.deepEqual([...new Set(asked)], ['nginx'], 'on the active machine a warm service is not asked (appHealth asks the application)');
  assert.equal(h.agent.roleOk(), true, 'its own health check is shown, the role check is the application health');
  answers = true;
  await h.agent.tick();
  assert.equal(h.agent.services.find((s) => s.name === 'nginx')?.ready, true);
  // Replaced: on the standby its `active` services are stopped and not asked (its warm one is).
  asked.length = 0;
  h.set('app2', 2);
  await h.agent.tick();
  assert.ok(!asked.includes('nginx'), asked.join());
  assert.equal(h.agent.services.find((s) => s.name === 'nginx')?.ready, undefined);
});

test('warm standby: activation starts the `active` services and activates the application, renewed every cycle with the lease left', async () => {
  const h = warmHarness();
  h.set('app2', 1);
  await h.agent.tick();
  h.set('app1', 2);
  await h.agent.tick();
  assert.deepEqual(h.run, { app: true, nginx: true });
  assert.equal(h.appActive(), 2);
  assert.equal(h.agent.roleOk(), true);
  h.advance(1000);
  await h.agent.tick();
  assert.deepEqual(
    h.calls.filter((c) => c.startsWith('activate')),
    ['activate 2 3000', 'activate 2 3000'],
  );
});

test('warm standby: standing down deactivates the application and keeps it running; a failed deactivation stops everything (fence)', async () => {
  const h = warmHarness();
  h.set('app1', 1);
  await h.agent.tick();
  h.set('app2', 2);
  await h.agent.tick();
  assert.deepEqual([h.run, h.appActive()], [{ app: true, nginx: false }, null]);
  assert.ok(h.calls.includes('deactivate'));

  h.set('app1', 3);
  await h.agent.tick();
  assert.equal(h.appActive(), 3);
  h.hookFails(true);
  h.set('app2', 4);
  await h.agent.tick();
  assert.deepEqual(h.run, { app: false, nginx: false }, 'everything stopped: the application did not confirm');
  assert.ok(h.log.includes('deactivate-failed'));
});

test("warm standby: an application activated before the agent's lease ran out stops by itself with it; the agent stands it down too", async () => {
  const h = warmHarness();
  h.set('app1', 1);
  await h.agent.tick();
  h.advance(3000);
  assert.equal(h.appActive(), null, 'the grant ran out with the lease');
  await h.agent.leaseEnded();
  assert.deepEqual(h.run, { app: true, nginx: false });
  assert.equal(h.calls.at(-1), 'deactivate');
});

/** Ride-out (./ride-out.ts): the agents' own logic over the in-memory etcd; the lab test is test/lab/db-release.test.ts and handover.test.ts. */
test('ride-out: etcd out for every machine, the active one serves on while its peer confirms; nothing moves; back, it confirms again', async () => {
  const c = cluster(['app1', 'app2'], { rideOut: true });
  c.set('app1', 1);
  await c.agent('app1').tick();
  await c.agent('app2').tick();
  c.cut('app1');
  c.cut('app2');
  for (let ms = 0; ms < 30_000; ms += 500) {
    await c.agent('app1').tick();
    await c.agent('app2').tick();
    assert.deepEqual(c.serving(), ['app1'], `at ${ms} ms`);
    assert.equal(c.agent('app1').roleOk(), true, `role check at ${ms} ms`);
    c.advance(500);
  }
  assert.ok((c.memory('app2')?.promisedUntilMs ?? 0) > c.now(), 'the peer stored its promise');
  c.heal('app1');
  c.heal('app2');
  await c.agent('app1').tick();
  assert.equal(c.agent('app1').rideOutUntil, null, 'confirmed in etcd again: the ride-out ends');
  assert.deepEqual(c.serving(), ['app1']);
});

test('ride-out: a peer that does not answer, or refuses, leaves the lease to run out: a self-fence, as without it', async () => {
  const c = cluster(['app1', 'app2', 'app3'], { rideOut: true });
  c.set('app1', 1);
  for (const n of ['app1', 'app2', 'app3']) await c.agent(n).tick();
  c.cut('app1');
  c.apart('app3');
  for (let ms = 0; ms <= 3000; ms += 500) {
    await c.agent('app1').tick();
    c.advance(500);
  }
  assert.equal(c.agent('app1').isActive(), false);
  await c.agent('app1').leaseEnded();
  assert.equal(c.running('app1'), false, 'one of two peers unreachable: stopped at the end of the lease');
});

test('ride-out: cut from etcd while its peer and the observer see it; the failover is held until both the claim and the promise ended, never two serving', async () => {
  const c = cluster(['app1', 'app2'], { rideOut: true });
  c.set('app1', 1);
  await c.agent('app1').tick();
  await c.agent('app2').tick();
  c.cut('app1');
  let movedAt: number | null = null;
  for (let ms = 0; ms < 15_000; ms += 250) {
    if (ms === 1500) {
      c.set('app2', 2); // the observer fails over; etcd expires app1's claim a lease after its last renewal
      movedAt = c.now();
    }
    if (ms === 3500) c.expire('app1');
    await c.agent('app2').tick();
    await c.agent('app1').tick();
    if (c.agent('app1').isActive() && !c.running('app1')) await c.agent('app1').tick();
    if (!c.agent('app1').isActive()) await c.agent('app1').leaseEnded();
    assert.ok(c.serving().length <= 1, `one machine at most at ${ms} ms: ${c.serving().join(', ')}`);
    c.advance(250);
  }
  assert.deepEqual(c.serving(), ['app2'], 'app2 serves once its promise has ended');
  assert.ok(movedAt !== null && (c.memory('app2')?.promisedUntilMs ?? 0) > movedAt, 'app2 had promised app1 a lease from before the failover');
});

test('ride-out: a promise holds the peer back even when etcd names it and no claim is left, and across its restart', async () => {
  const c = cluster(['app1', 'app2'], { rideOut: true });
  c.set('app1', 1);
  await c.agent('app1').tick();
  await c.agent('app2').tick();
  assert.deepEqual(await c.agent('app2').grantRideOut({ node: 'app1', epoch: 1 }), { granted: true });
  const promised = c.memory('app2')!.promisedUntilMs!;
  assert.equal(promised, c.now() + 3000, 'one lease from when the request came');
  // The observer moves the application to app2 and app1's claim is gone: app2 still keeps its word.
  c.set('app2', 2);
  c.expire('app1');
  c.advance(2900);
  await c.agent('app2').tick();
  assert.equal(c.running('app2'), false);
  assert.equal(c.agent('app2').isActive(), false);
  assert.equal(c.agent('app2').roleOk(), false);
  // Restarted with its memory (the daemon keeps the promise on the boot clock): still held.
  const restarted = new Agent(
    {
      node: 'app2',
      confirm: async () => ({ record: { node: 'app2', epoch: 2, since: '', reason: 'test' }, sentAtMs: c.now() }),
      appHealth: async () => true,
      now: () => c.now(),
      log: () => {},
    },
    { leaseMs: 3000 },
    c.memory('app2'),
  );
  await restarted.tick();
  assert.equal(restarted.isActive(), false, 'the restarted agent keeps the promise');
  assert.match(restarted.whyNotActive() ?? '', /^promised a peer riding out an etcd outage not to become active for 100 ms more$/);
  c.advance(100);
  await restarted.tick();
  assert.equal(restarted.isActive(), true, 'and is active once it has run out');
  assert.equal(restarted.whyNotActive(), null);
  await c.agent('app1').tick();
  await c.agent('app2').tick();
  assert.deepEqual(c.serving(), ['app2']);
});

test('ride-out: an active machine, or one that learned of a newer epoch, refuses; a refusal stores no promise', async () => {
  const c = cluster(['app1', 'app2'], { rideOut: true });
  c.set('app1', 1);
  await c.agent('app1').tick();
  await c.agent('app2').tick();
  assert.equal((await c.agent('app1').grantRideOut({ node: 'app2', epoch: 1 })).granted, false, 'app1 is active');
  c.set('app2', 2);
  await c.agent('app2').tick(); // waits for app1's claim, but knows of epoch 2
  assert.equal((await c.agent('app2').grantRideOut({ node: 'app1', epoch: 1 })).granted, false);
  assert.equal(c.memory('app2')?.promisedUntilMs, undefined);
});
