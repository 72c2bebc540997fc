import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classify } from './procs.ts';

test('processes are named as lab status shows them', () => {
  assert.equal(classify('etcd', ['etcd', '--config-file', '/etc/vigil/etcd.yml']), 'etcd');
  assert.equal(classify('patroni', ['/usr/bin/python3', '/usr/bin/patroni', '/etc/vigil/patroni.yml']), 'patroni');
  assert.equal(classify('postgres', ['postgres: lab: walwriter']), 'postgres');
  assert.equal(classify('node', ['/usr/bin/node', '/x/bin/vigil.js', 'refapp', '--config', 'f']), 'app');
  assert.equal(classify('node', ['/opt/vigil/bin/node', '/opt/vigil/lib/vigil-refapp.mjs', '--config', 'f']), 'app');
  // The analytics service is the same bundle with --analytics: a process of its own, never counted as the application's.
  assert.equal(classify('node', ['/opt/vigil/bin/node', '/opt/vigil/lib/vigil-refapp.mjs', '--config', 'f', '--analytics']), 'analytics');
  assert.equal(classify('node', ['/usr/bin/node', '/x/bin/vigil.js', 'refapp', '--analytics']), 'analytics');
  assert.equal(classify('node', ['/opt/vigil/bin/node', '/opt/vigil/lib/vigil.mjs', 'observer', '--node', 'observer']), 'observer');
  assert.equal(classify('node', ['/opt/vigil/bin/node', '--max-semi-space-size=1', '/opt/vigil/lib/vigil.mjs', 'agent', '--node', 'db1']), 'agent');
  assert.equal(classify('node', ['/usr/bin/node', '/x/bin/vigil.js', 'agent']), 'agent');
  assert.equal(classify('bash', ['bash']), 'other');
});
