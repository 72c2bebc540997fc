/**
 * The Actions page's logic: the form's checks, the pre-flight view, and carrying an action out on
 * a real etcd (the request the observer reads, the maintenance flag), refused when the active
 * record moved since the page showed it. The observer's own refusal of a request decided at an
 * older epoch is in src/observer/decide.test.ts; the page in a browser, in
 * test/lab/operator-commands.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openStore, type VigilStore } from '../etcd/store.ts';
import type { ClusterStatus } from '../ops/status.ts';
import { clusterFixture } from '../testing/clusters.ts';
import { closeAll, startTestEtcd, type TestEtcd } from '../testing/etcd.ts';
import { actionsView, carryOut, equivalentCommand, parseAction, type ActionForm } from './actions.ts';

const cluster = clusterFixture('pair');
const form = (f: Record<string, string>) => new URLSearchParams(f);

describe('parseAction', () => {
  it('takes a complete form, and names the field and the fix for each thing missing or wrong', () => {
    assert.deepEqual(parseAction(form({ kind: 'switchover', to: 'app2', epoch: '7', confirm: 'app2', reason: 'kernel update' }), cluster), {
      kind: 'switchover',
      to: 'app2',
      epoch: 7,
      reason: 'kernel update',
    });
    assert.equal(
      (parseAction(form({ kind: 'failover', to: 'app2', epoch: '7', confirm: 'app2', reason: ' kernel\n\t update ' }), cluster) as ActionForm).reason,
      'kernel update',
      'one line',
    );
    assert.deepEqual(parseAction(form({ kind: 'maintenance-off', epoch: 'none', confirm: 'maintenance' }), cluster), {
      kind: 'maintenance-off',
      epoch: null,
      reason: '',
    });
    const errors: [Record<string, string>, RegExp][] = [
      [{ kind: 'reboot', epoch: '7', confirm: 'x', reason: 'r' }, /`kind` must be one of switchover, failover, maintenance-on, maintenance-off/],
      [{ kind: 'switchover', to: 'app2', epoch: 'seven', confirm: 'app2', reason: 'r' }, /`epoch` must be the epoch the page showed/],
      [{ kind: 'switchover', to: 'app2', epoch: '7', confirm: 'app2', reason: ' ' }, /`reason` must say why/],
      [{ kind: 'switchover', to: 'app9', epoch: '7', confirm: 'app9', reason: 'r' }, /`to` must name an app machine of this cluster \(app1, app2\)/],
      [{ kind: 'failover', epoch: '7', confirm: '', reason: 'r' }, /a failover needs the machine to make active \(field `to`\)/],
      [{ kind: 'failover', to: 'app2', epoch: '7', confirm: 'app1', reason: 'r' }, /type `app2` in the confirmation field/],
      [{ kind: 'maintenance-on', epoch: '7', confirm: 'yes', reason: 'r' }, /type `maintenance` in the confirmation field/],
    ];
    for (const [f, re] of errors) {
      const r = parseAction(form(f), cluster);
      assert.ok('error' in r, JSON.stringify(f));
      assert.match(r.error, re);
    }
  });

  it('the shell equivalent of each action', () => {
    assert.equal(equivalentCommand({ kind: 'switchover', to: 'app2', reason: 'x' }), 'vigil switchover --to app2');
    assert.equal(equivalentCommand({ kind: 'failover', to: 'app1', reason: 'x' }), 'vigil failover --to app1');
    assert.equal(equivalentCommand({ kind: 'maintenance-on', reason: "db upgrade, Bob's" }), `vigil maintenance on --reason 'db upgrade, Bob'\\''s'`);
  });
});

describe('actionsView', () => {
  it('the app machines: the active one, a ready standby, one whose agent is silent; the database and the file-sync backlog', () => {
    const agent = (node: string, o: { active?: boolean; ready?: boolean; patroni?: object; sync?: object }) =>
      ({
        node,
        active: o.active ?? false,
        epoch: 7,
        confirmedAgoMs: 100,
        appHealthy: true,
        ready: o.ready ?? false,
        services: [],
        patroni: o.patroni,
        sync: o.sync,
      }) as never;
    const s = {
      cluster: 'lab',
      active: { node: 'app1', epoch: 7, since: 'x', reason: 'bootstrap' },
      maintenance: null,
      observerLeader: { id: 'o', host: 'observer', since: 'x' },
      observerState: null,
      events: [],
      airgap: null,
      machines: [
        {
          name: 'app1',
          address: '10.0.0.11',
          roles: ['app', 'db'],
          hasAgent: true,
          agent: agent('app1', {
            active: true,
            patroni: { role: 'leader', state: 'running' },
            sync: { role: 'pushing', peers: [{ node: 'app2', backlog: 3, lagMs: 10, error: null }] },
          }),
        },
        {
          name: 'app2',
          address: '10.0.0.12',
          roles: ['app', 'db'],
          hasAgent: true,
          agent: agent('app2', { ready: true, patroni: { role: 'replica', state: 'streaming', lagBytes: 16 } }),
        },
        { name: 'app3', address: '10.0.0.13', roles: ['app'], hasAgent: true, agent: null },
        { name: 'observer', address: '10.0.0.10', roles: ['observer', 'proxy', 'etcd'], hasAgent: false, agent: null },
      ],
    } as unknown as ClusterStatus;
    const v = actionsView(s);
    assert.equal(v.epoch, 7);
    assert.equal(v.active, 'app1');
    assert.equal(v.observerLeads, true);
    assert.deepEqual(
      v.machines.map((m) => [m.name, m.active, m.ready, m.standing, m.database, m.syncBacklog]),
      [
        ['app1', true, false, 'active, serving', 'leader running', null],
        ['app2', false, true, 'standby, ready', 'replica streaming, lag 16 B', 3],
        ['app3', false, false, 'its agent does not answer', '', null],
      ],
    );
  });
});

describe('carryOut against a real etcd', () => {
  let etcd: TestEtcd;
  const stores: VigilStore[] = [];
  let n = 0;
  const open = async () => {
    const s = await openStore({ endpoints: [etcd.endpoint], cluster: `act${++n}`, callTimeoutMs: 3000 });
    stores.push(s);
    return s;
  };
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => {
    try {
      await closeAll(stores);
    } finally {
      await etcd?.stop();
    }
  });
  const record = (node: string, epoch: number) => ({ node, epoch, since: new Date().toISOString(), reason: 'test' });
  const sw = (epoch: number | null, to = 'app2'): ActionForm => ({ kind: 'switchover', to, epoch, reason: 'planned' });

  it('a request decided at the current epoch goes to the observer with the epoch and who asked; one decided at an older epoch is refused and nothing is written', async () => {
    const s = await open();
    await s.casActive(record('app1', 7), null);
    const lead = await s.campaign('obs', 'observer', 5);
    const stale = await carryOut(s, sw(6), 'ann');
    assert.deepEqual(stale, {
      ok: false,
      status: 409,
      message: 'the cluster has moved since the page showed it (decided at epoch 6; now app1 is active at epoch 7): look at the page again and decide anew',
    });
    assert.equal(await s.getRequest(), null, 'nothing written for a stale action');
    const ok = await carryOut(s, sw(7), 'ann');
    assert.equal(ok.ok, true);
    const req = await s.getRequest();
    assert.equal(req?.kind, 'switchover');
    assert.equal(req?.to, 'app2');
    assert.equal(req?.epoch, 7);
    assert.equal(req?.by, 'ann (dashboard)');
    const busy = await carryOut(s, { kind: 'failover', to: 'app2', epoch: 7, reason: 'now' }, 'bob');
    assert.equal(busy.ok, false);
    assert.match((busy as { message: string }).message, /another request is pending \(switchover /);
    await lead.resign();
  });

  it('without an observer a request is refused (503): nobody would carry it out', async () => {
    const s = await open();
    await s.casActive(record('app1', 2), null);
    const r = await carryOut(s, sw(2), 'ann');
    assert.deepEqual([r.ok, (r as { status: number }).status], [false, 503]);
    assert.equal(await s.getRequest(), null);
  });

  it('maintenance on names the user and the reason; off clears it; both check the epoch too', async () => {
    const s = await open();
    assert.equal((await carryOut(s, { kind: 'maintenance-on', epoch: 3, reason: 'upgrade' }, 'ann')).ok, false, 'no record: epoch 3 is stale');
    const on = await carryOut(s, { kind: 'maintenance-on', epoch: null, reason: 'upgrade' }, 'ann');
    assert.equal(on.ok, true);
    const m = await s.getMaintenance();
    assert.equal(m?.by, 'ann (dashboard)');
    assert.equal(m?.reason, 'upgrade');
    assert.deepEqual(await carryOut(s, { kind: 'maintenance-off', epoch: null, reason: '' }, 'ann'), {
      ok: true,
      message: 'maintenance is off: the observer acts again',
    });
    assert.equal(await s.getMaintenance(), null);
  });
});
