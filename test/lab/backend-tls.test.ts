/**
 * HTTPS from the proxy to the application machines, verified (`application.backendTls`, the
 * seed's "Configure Backend for HTTPS" without its `verify none`), on one `pair` lab whose
 * certificates apply issued from the cluster CA:
 * - a user's request passes TLS on both hops: client to HAProxy's :443, HAProxy to nginx on the
 *   app machine's :443 (nginx serves nothing in clear there);
 * - an app machine whose nginx presents a certificate of another CA is refused: DOWN in HAProxy's
 *   app backend, the observer fails over to the other machine and users are served on, and
 *   doctor names the machine, the CA and the fix.
 * With `verify: false` the last part fails: the machine with the foreign certificate keeps serving.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withRole } from '../../src/config/schema.ts';
import type { DoctorReport } from '../../src/doctor/types.ts';
import { APP_BACKEND } from '../../src/layout/network.ts';
import { PATHS } from '../../src/layout/paths.ts';
import { UNITS } from '../../src/layout/units.ts';
import { labAgents, labDown, labRun, labRuntime, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { LAB_DIR } from '../../src/lab/paths.ts';
import { labSettled } from '../../src/lab/settle.ts';
import { LabShell } from '../../src/lab/shell.ts';
import { createClusterCa, issueCertificate } from '../../src/pki/ca.ts';
import { waitFor } from '../../src/util/exec.ts';
import { httpsText } from '../../src/util/net.ts';

let lab: LabHandle;
let proxy: { name: string; address: string };

/** GET over HTTPS, the certificate checked against the lab's cluster CA (for an IP address: its IP SAN). */
async function httpsGet(url: string): Promise<{ status: number; body: string }> {
  const ca = await readFile(join(LAB_DIR, 'pki', 'ca.pem'));
  const r = await httpsText(url, { ca, agent: false, signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: r.text };
}

/** The app machine that answered a request through the proxy's :443 (the reference app's /health names it). */
async function servedBy(): Promise<string | undefined> {
  const r = await httpsGet(`https://${proxy.address}:${lab.cluster.proxy.httpsPort}${lab.cluster.application.healthPath}`).catch(() => undefined);
  return r?.status === 200 ? (JSON.parse(r.body) as { node: string }).node : undefined;
}

async function activeApp(): Promise<string | undefined> {
  const agents = await labAgents();
  return withRole(lab.cluster, 'app').find((m) => agents.get(m.name)?.active)?.name;
}

const appState = async (name: string) => (await labRuntime(proxy.name).servers(APP_BACKEND)).find((s) => s.server === name);

before(async () => {
  await labDown();
  lab = await labUp({ topology: 'pair', backendTls: { verify: true } }, (l) => console.log(`# lab: ${l}`));
  proxy = withRole(lab.cluster, 'proxy')[0]!;
  await labSettled(lab);
});

after(async () => {
  await labDown();
});

test('a request passes TLS on both hops; a machine with a certificate of another CA is refused, the service fails over, doctor names it', async () => {
  const started = performance.now();
  const phase = (what: string) => console.log(`# ${what} at ${((performance.now() - started) / 1000).toFixed(1)} s`);
  const first = await activeApp();
  assert.ok(first, 'an active app machine');
  const other = withRole(lab.cluster, 'app').find((m) => m.name !== first)!;
  const firstAddress = lab.cluster.machines.find((m) => m.name === first)!.address;

  // Hop 1: the client's TLS to HAProxy (verified against the cluster CA). Hop 2: HAProxy's server
  // line speaks TLS and verifies, and nginx on the app machine answers only TLS on its port.
  assert.equal(await servedBy(), first, `the request through :443 is served by ${first}`);
  const cfg = (await labRun(proxy.name, ['cat', PATHS.haproxyConfig])).stdout;
  assert.match(cfg, new RegExp(`server ${first} ${firstAddress.replaceAll('.', '\\.')}:443 ssl verify required ca-file \\S+ verifyhost ${first} `));
  const plain = await fetch(`http://${firstAddress}:443/health`, { signal: AbortSignal.timeout(5000) }).then((r) => r.status);
  assert.equal(plain, 400, 'nginx refuses plain HTTP on its TLS port');
  const listens = (await labRun(first, ['ss', '-Hltn', 'sport = :80'])).stdout.trim();
  assert.equal(listens, '', `nothing serves plain HTTP on :80 of ${first}`);

  phase('both hops checked');
  // A certificate from another CA, naming the machine correctly, put in place of nginx's own.
  const foreignCa = await createClusterCa({ clusterName: 'not-this-cluster' });
  const foreign = await issueCertificate(foreignCa, { commonName: first, ipAddresses: [firstAddress, '127.0.0.1'], dnsNames: [first], usage: 'server' });
  const shell = new LabShell(first);
  await shell.writeFile(PATHS.nginxTlsKey, foreign.keyPem, { mode: 0o600, owner: 'root:root' });
  await shell.writeFile(PATHS.nginxTlsCert, foreign.certPem, { mode: 0o644, owner: 'root:root' });
  assert.equal((await labRun(first, ['systemctl', 'reload', UNITS.nginx])).code, 0, 'nginx reloads with the foreign certificate');

  // Refused: DOWN in HAProxy, and the observer moves the service to the other machine.
  await waitFor(
    `${first} DOWN in HAProxy and ${other.name} active and serving through :443`,
    async () => {
      const [state, active, by] = await Promise.all([appState(first), activeApp(), servedBy()]);
      return state?.op === 'down' && active === other.name && by === other.name ? true : undefined;
    },
    60_000,
    250,
  );
  phase(`${first} DOWN, ${other.name} active and serving`);
  const afterwards = await Promise.all([1, 2, 3].map(() => servedBy()));
  assert.deepEqual(afterwards, [other.name, other.name, other.name], `requests through :443 are served by ${other.name}`);

  // Doctor, from the proxy's side, names the machine, the CA and the fix.
  const { stdout } = await new Promise<{ stdout: string }>((resolve) =>
    execFile(process.execPath, ['bin/vigil.js', 'doctor', '--lab', '--json'], { timeout: 90_000, maxBuffer: 16 << 20 }, (_err, out) =>
      resolve({ stdout: out }),
    ),
  );
  const report = JSON.parse(stdout) as DoctorReport;
  phase('doctor done');
  const mine = report.findings.filter((f) => f.check === 'backend-tls');
  for (const f of mine) console.log(`# ${f.severity} ${f.machine} ${f.check}: ${f.what} | fix: ${f.fix}`);
  const f = mine.find((x) => x.machine === first && /is not issued by the CA in/.test(x.what));
  assert.ok(f, `a backend-tls finding on ${first}; got: ${JSON.stringify(mine)}`);
  assert.equal(f.severity, 'fail');
  assert.match(f.what, /not-this-cluster/, 'the finding names the issuer');
  assert.match(f.why, /HAProxy refuses the connection/);
  assert.match(f.fix, /nginx\.pem, issued again by the cluster CA/);
  assert.equal(mine.filter((x) => x.machine === other.name).length, 0, `no backend-tls finding on ${other.name}, whose certificate is the cluster CA's`);
});
