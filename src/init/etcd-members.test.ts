/** Where `vigil init` puts etcd when no machine is given the role. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Role } from '../config/schema.ts';
import { defaultEtcdMembers } from './etcd-members.ts';
import { parseAnswers, renderInit } from './render.ts';

const ms = (spec: Record<string, Role[]>) => Object.entries(spec).map(([name, roles]) => ({ name, roles }));

it('two observer machines and a third machine: 3 members, on the observers and then the first database-only machine', () => {
  const p = defaultEtcdMembers(ms({ app1: ['app'], app2: ['app'], db1: ['db'], db2: ['db'], proxy1: ['proxy', 'observer'], proxy2: ['proxy', 'observer'] }))!;
  assert.deepEqual(p.members, ['proxy1', 'proxy2', 'db1']);
  assert.match(p.why, /3 members, on proxy1, proxy2, db1/);
});

it('no database-only machine: the third member on the first app machine (pair-like), then any other', () => {
  assert.deepEqual(defaultEtcdMembers(ms({ app1: ['app', 'db'], app2: ['app', 'db'], p1: ['proxy', 'observer'], p2: ['proxy', 'observer'] }))!.members, [
    'p1',
    'p2',
    'app1',
  ]);
  assert.deepEqual(defaultEtcdMembers(ms({ o1: ['observer'], o2: ['observer'], lb: ['proxy'] }))!.members, ['o1', 'o2', 'lb']);
  // Three observers: one member on each.
  assert.deepEqual(defaultEtcdMembers(ms({ o1: ['observer'], o2: ['observer'], o3: ['observer'], a: ['app'] }))!.members, ['o1', 'o2', 'o3']);
});

it('one observer machine: one member there, as the presets have; two machines only: one member', () => {
  assert.deepEqual(defaultEtcdMembers(ms({ lb: ['proxy', 'observer'], web1: ['app', 'db'], web2: ['app', 'db'] }))!.members, ['lb']);
  assert.deepEqual(defaultEtcdMembers(ms({ o1: ['observer', 'app', 'db'], o2: ['observer', 'app', 'db'] }))!.members, ['o1']);
});

it('a machine given the etcd role: the user chose, nothing placed', () => {
  assert.equal(defaultEtcdMembers(ms({ o1: ['observer', 'etcd'], o2: ['observer'], db1: ['db'] })), undefined);
});

it('vigil init with custom answers and no etcd role: the cluster file has the 3 members, with a note saying where and why', () => {
  const text =
    'topology: custom\nproxy: { virtualAddress: 10.1.0.100 }\nmachines:\n' +
    [
      ['app1', 'app', 11],
      ['app2', 'app', 12],
      ['db1', 'db', 21],
      ['db2', 'db', 22],
      ['proxy1', 'proxy, observer', 41],
      ['proxy2', 'proxy, observer', 42],
    ]
      .map(([n, roles, a]) => `  ${n}: { address: 10.1.0.${a}, roles: [${roles}] }`)
      .join('\n');
  const r = renderInit(parseAnswers(text, 'a.yaml'));
  assert.deepEqual(
    r.cluster.machines.filter((m) => m.roles.includes('etcd')).map((m) => m.name),
    ['db1', 'proxy1', 'proxy2'],
  );
  assert.match(r.clusterYaml, /# .*etcd placed by vigil init: 3 members, on proxy1, proxy2, db1/);
  // Given by the user: kept as written.
  const own = renderInit(parseAnswers(text.replace('roles: [db] }', 'roles: [db, etcd] }'), 'a.yaml'));
  assert.deepEqual(
    own.cluster.machines.filter((m) => m.roles.includes('etcd')).map((m) => m.name),
    ['db1'],
  );
});
