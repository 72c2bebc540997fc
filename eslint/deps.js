/**
 * Which folder of src/ may import which: the dependency direction of the code, checked by the
 * lint (eslint/folder-deps.js) on every import of every non-test file under src/, type imports
 * included. A folder imports itself freely. An entry is a folder, or one file of it
 * ('agent/client.ts') when only that file is meant. Tests (*.test.ts), bin/, test/, bench/ and
 * scripts/ are not checked.
 *
 * Layers, bottom up (docs/architecture.md draws them):
 *   vocabulary   util, model, config, layout
 *   adapters     pki, mtls, etcd, patroni, proxy, remote, events, alerts, airgap, metrics
 *   shared work  render, facts, sync
 *   programs     agent, observer, ops, doctor, apply, init, and cli, which wires them; dashboard
 *                (served by the observer, reads through ops/status.ts; its Doctor page runs doctor)
 *   outside production (never imported by the above; not in the artifact)
 *                refapp, lab, testing
 */
export const ALLOWED = {
  util: [],
  model: ['util'],
  config: ['model', 'util'],
  layout: ['config'],

  pki: ['config', 'layout', 'util'],
  mtls: ['util'],
  etcd: ['model', 'util'],
  patroni: ['config', 'layout', 'model', 'mtls', 'util'],
  proxy: ['layout', 'util'],
  remote: ['config', 'layout', 'util'],
  events: ['etcd', 'model', 'util'],
  alerts: ['config', 'model', 'util'],
  airgap: ['model', 'util'],
  metrics: ['config', 'layout', 'mtls', 'util'],
  dashboard: ['config', 'doctor', 'etcd', 'events', 'layout', 'model', 'ops/status.ts', 'patroni', 'ops/context.ts', 'pki', 'util'],

  render: ['config', 'layout', 'model', 'patroni', 'util'],
  facts: ['config', 'layout', 'proxy', 'remote', 'util'],
  sync: ['config', 'events', 'layout', 'model', 'remote', 'util'],

  agent: ['airgap', 'config', 'etcd', 'events', 'layout', 'metrics', 'model', 'mtls', 'patroni', 'pki', 'proxy', 'sync', 'util'],
  observer: [
    'agent/client.ts',
    'alerts',
    'config',
    'dashboard',
    'etcd',
    'events',
    'facts',
    'layout',
    'metrics',
    'model',
    'mtls',
    'patroni',
    'pki',
    'proxy',
    'util',
  ],
  ops: ['agent/client.ts', 'airgap', 'config', 'etcd', 'events', 'layout', 'model', 'mtls', 'patroni', 'pki', 'remote', 'render', 'util'],
  doctor: ['agent/client.ts', 'config', 'etcd', 'facts', 'layout', 'model', 'mtls', 'patroni', 'pki', 'proxy', 'remote', 'render', 'util'],
  apply: ['agent/client.ts', 'airgap', 'config', 'facts', 'layout', 'model', 'mtls', 'patroni', 'pki', 'proxy', 'remote', 'render', 'sync', 'util'],
  init: ['alerts', 'config', 'dashboard/users.ts', 'layout', 'pki', 'remote', 'util'],
  cli: ['agent', 'airgap', 'apply', 'config', 'doctor', 'init', 'layout', 'model', 'observer', 'ops', 'remote', 'render', 'sync', 'util'],

  refapp: ['cli/run.ts', 'config', 'facts', 'layout', 'render', 'util'],
  lab: [
    'agent',
    'apply',
    'cli',
    'config',
    'dashboard',
    'doctor',
    'etcd',
    'events',
    'facts',
    'init',
    'layout',
    'model',
    'mtls',
    'observer',
    'ops',
    'patroni',
    'pki',
    'proxy',
    'refapp',
    'remote',
    'render',
    'sync',
    'util',
  ],
  testing: ['agent', 'apply', 'config', 'doctor', 'etcd', 'facts', 'layout', 'model', 'patroni', 'pki', 'remote', 'render', 'util'],
};

/** Folders whose code may run on a customer's machine: the artifact bundles only these. */
export const PRODUCTION = Object.keys(ALLOWED).filter((f) => !['refapp', 'lab', 'testing'].includes(f));
