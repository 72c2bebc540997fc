import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labFixes } from './fixes.ts';

const lab5 = labFixes(5, { secretsFile: '/var/lib/vigil-lab5/vigil.secrets.yaml', hostPath: (m, p) => `/var/lib/vigil-lab5/hosts/${m}/root${p}` });

test('lab fixes are `vigil lab` commands, naming the lab by its id when it is not 0', () => {
  const lab0 = labFixes(0, { secretsFile: '/x', hostPath: (_m, p) => p });
  assert.equal(lab0.start('observer', 'etcd'), 'vigil lab start observer etcd');
  assert.equal(lab0.vigil(['maintenance', 'off']), 'vigil maintenance off --lab');
  assert.equal(lab5.platform, 'lab');
  assert.equal(lab5.start('db1', 'patroni'), 'VIGIL_LAB_ID=5 vigil lab start db1 patroni');
  assert.equal(lab5.start('app1', 'nginx'), 'VIGIL_LAB_ID=5 vigil lab exec app1 -- systemctl restart vigil-agent.service');
  assert.equal(lab5.vigil(['failover', '--to', 'app1']), 'VIGIL_LAB_ID=5 vigil failover --to app1 --lab');
  assert.equal(lab5.on('db1', ['chmod', '0600', '/etc/vigil/pki/db1.key']), 'VIGIL_LAB_ID=5 vigil lab exec db1 -- chmod 0600 /etc/vigil/pki/db1.key');
  assert.equal(lab5.stopStray('app2', { name: 'nginx', pid: 4242, unit: null }), 'VIGIL_LAB_ID=5 vigil lab exec app2 -- kill 4242');
  assert.equal(
    lab5.stopStray('app2', { name: 'nginx', pid: 4242, unit: 'nginx.service' }),
    'VIGIL_LAB_ID=5 vigil lab exec app2 -- systemctl disable --now nginx.service',
  );
  assert.equal(lab5.openPort('db2', 5432, ['10.213.5.21'], null), 'VIGIL_LAB_ID=5 vigil lab heal (removes every cut and every blocked port)');
  assert.equal(
    lab5.setPassword('app2', { path: '/etc/vigil/refapp/application.properties', key: 'spring.datasource.password' }),
    'edit /var/lib/vigil-lab5/hosts/app2/root/etc/vigil/refapp/application.properties and set spring.datasource.password to the value of appDbPassword in /var/lib/vigil-lab5/vigil.secrets.yaml',
  );
});
