import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { LAB_ID } from './paths.ts';
import { labClusterYaml, labMachines, labSecretsYaml } from './topology.ts';
import { parseSecrets } from '../config/load.ts';
import { verifyPassword } from '../dashboard/users.ts';

const names = (shape: Parameters<typeof labMachines>[0]) => labMachines(shape).map((m) => `${m.name}:${m.roles.join('+')}`);

test('distributed has the five machines of the preset with their roles', () => {
  assert.deepEqual(names({ topology: 'distributed' }), ['observer:etcd+proxy+observer', 'app1:app', 'app2:app', 'db1:db', 'db2:db']);
});

test('pair puts the database on the app machines', () => {
  assert.deepEqual(names({ topology: 'pair' }), ['observer:etcd+proxy+observer', 'app1:app+db', 'app2:app+db']);
});

test('extra etcd members go to database machines first, then app machines, then machines of their own', () => {
  assert.deepEqual(names({ topology: 'distributed', etcd: 3 }), ['observer:etcd+proxy+observer', 'app1:app', 'app2:app', 'db1:db+etcd', 'db2:db+etcd']);
  const seven = labMachines({ topology: 'pair', etcd: 7 });
  assert.equal(seven.filter((m) => m.roles.includes('etcd')).length, 7);
  assert.deepEqual(
    seven.slice(3).map((m) => m.name),
    ['etcd3', 'etcd4', 'etcd5', 'etcd6'],
  );
});

test('--observers 2: an observer and an etcd member on each of two proxy machines, the third member on the first database machine, no observer machine', () => {
  assert.deepEqual(names({ topology: 'distributed', observers: 2 }), [
    'app1:app',
    'app2:app',
    'db1:db+etcd',
    'db2:db',
    'proxy1:proxy+observer+etcd',
    'proxy2:proxy+observer+etcd',
  ]);
  // pair: the third member on the first app machine (it holds a database too).
  assert.deepEqual(names({ topology: 'pair', observers: 2 }), ['app1:app+db+etcd', 'app2:app+db', 'proxy1:proxy+observer+etcd', 'proxy2:proxy+observer+etcd']);
  // More proxies than observers: the third proxy is a proxy only.
  assert.deepEqual(names({ topology: 'pair', observers: 2, proxies: 3 }).slice(2), [
    'proxy1:proxy+observer+etcd',
    'proxy2:proxy+observer+etcd',
    'proxy3:proxy',
  ]);
  // Five members: the observers' two, then both database machines, then the first app machine.
  assert.equal(labMachines({ topology: 'distributed', observers: 2, etcd: 5 }).filter((m) => m.roles.includes('etcd')).length, 5);
  const doc = parse(labClusterYaml({ topology: 'distributed', observers: 2 }));
  assert.ok(doc.proxy.virtualAddress, 'two proxy machines share the floating entry address');
  assert.equal(doc.machines.observer, undefined);
});

test('--observers refuses a shape where the observers would not be on proxy machines, or one etcd member', () => {
  assert.throws(() => labMachines({ topology: 'distributed', observers: 2, proxies: 1 }), /use --proxies 2 or more, or leave --proxies out/);
  assert.throws(() => labMachines({ topology: 'distributed', observers: 2, etcd: 1 }), /use --etcd 3 or more/);
  assert.throws(() => labMachines({ topology: 'distributed', observers: 0 }), /use 1 to 9 observers/);
  // One observer is the seed's layout, whatever --proxies says.
  assert.deepEqual(names({ topology: 'pair', observers: 1 }), names({ topology: 'pair' }));
});

test('addresses are unique and on the lab subnet', () => {
  const ms = labMachines({ topology: 'distributed', appNodes: 4, dbNodes: 3, etcd: 7 });
  const addrs = ms.map((m) => m.address);
  assert.equal(new Set(addrs).size, addrs.length);
  // The subnet of the lab this test runs beside (VIGIL_LAB_ID, 0 without it).
  for (const a of addrs) assert.match(a, new RegExp(`^10\\.213\\.${LAB_ID}\\.\\d+$`));
});

test('bad shapes are refused with the fix', () => {
  assert.throws(() => labMachines({ topology: 'pair', etcd: 2 }), /use 1, 3, 5 or 7/);
  assert.throws(() => labMachines({ topology: 'pair', appNodes: 1 }), /use 2 to 9 app machines/);
  assert.throws(() => labMachines({ topology: 'distributed', dbNodes: 1 }), /use 2 to 9 database machines/);
});

test('the lab cluster file carries timers and the reference app password file', () => {
  const doc = parse(labClusterYaml({ topology: 'pair', timers: { ttlSeconds: 30 } }));
  assert.equal(doc.timers.ttlSeconds, 30);
  assert.equal(doc.application.passwordFiles[0].key, 'spring.datasource.password');
});

test('every lab gets fresh passwords; the dashboard admin only as a hash that verifies', async () => {
  const a = await labSecretsYaml('dash-pass-1', 'view-pass-1');
  assert.notEqual(a, await labSecretsYaml('dash-pass-1', 'view-pass-1'));
  assert.ok(!a.includes('dash-pass-1'));
  const user = parseSecrets(a, 'vigil.secrets.yaml').dashboardUsers![0]!;
  assert.equal(user.name, 'admin');
  assert.equal(user.role, 'admin');
  assert.equal(await verifyPassword(user.passwordHash, 'dash-pass-1'), true);
});
