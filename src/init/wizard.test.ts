/**
 * The wizard: with scripted answers (every branch, fast), and once end to end through
 * @inquirer/prompts on injected streams, keystroke by keystroke, as a person would type.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { parseSecrets } from '../config/load.ts';
import { sshdUnavailable, startTestSshd, type TestSshd } from '../testing/sshd.ts';
import { VigilError } from '../util/errors.ts';
import { runInit } from './init.ts';
import { renderInit } from './render.ts';
import { checkDnsNames, checkPemFile, inquirerPrompter, runWizard, type Check, type Choice, type Prompter } from './wizard.ts';

type Step = [kind: 'select' | 'input' | 'password' | 'confirm' | 'checkbox', question: RegExp, answer: string | boolean | string[]];

/** A prompter that expects these questions in this order and gives these answers (checked by the question's own validation). */
function scripted(steps: Step[]): Prompter & { left: () => number } {
  const queue = [...steps];
  const next = (kind: Step[0], message: string, validate?: Check, dflt?: string) => {
    const step = queue.shift();
    assert.ok(step, `unexpected question: ${message}`);
    assert.equal(step[0], kind, `question "${message}"`);
    assert.match(message, step[1]);
    // As inquirer does: an empty answer takes the default, and the result is validated.
    const value = step[2] === '' && dflt !== undefined ? dflt : step[2];
    if (validate && typeof value === 'string') assert.equal(validate(value), true, `"${value}" for "${message}"`);
    return value;
  };
  return {
    left: () => queue.length,
    select: async <T extends string>(q: { message: string; choices: Choice<T>[] }) => {
      const v = next('select', q.message) as T;
      assert.ok(q.choices.some((c) => c.value === v));
      return v;
    },
    input: async (q) => next('input', q.message, q.validate, q.default) as string,
    password: async (q) => next('password', q.message, q.validate) as string,
    confirm: async (q) => next('confirm', q.message) as boolean,
    checkbox: async <T extends string>(q: { message: string; validate?: (v: T[]) => true | string }) => {
      const v = next('checkbox', q.message) as T[];
      if (q.validate) assert.equal(q.validate(v), true);
      return v;
    },
  };
}

describe('init wizard (scripted answers)', () => {
  let pemDir = '';
  before(async () => {
    pemDir = await mkdtemp(join(tmpdir(), 'vigil-wizard-pem-'));
    await writeFile(join(pemDir, 'site.crt'), '');
    await writeFile(join(pemDir, 'site.key'), '', { mode: 0o600 });
  });
  after(() => rm(pemDir, { recursive: true, force: true }));

  it('asks what the vendor installers ask, once, and makes valid files', async () => {
    const p = scripted([
      ['select', /Topology/, 'pair'],
      ['input', /Cluster name/, 'desk'],
      ['input', /SSH user/, 'root'],
      ['input', /SSH port/, '2222'],
      ['input', /Address of observer \(etcd, proxy, observer\)/, '10.0.0.10'],
      ['input', /Address of app1 \(app, db\)/, '10.0.0.11'],
      ['input', /Address of app2/, '10.0.0.12'],
      ['select', /replication/, 'asynchronous'],
      ['input', /PostgreSQL major version/, '16'],
      ['password', /Application database password/, 'app-db-password'],
      ['password', /same password again/, 'typo'],
      ['password', /Application database password/, 'app-db-password'],
      ['password', /same password again/, 'app-db-password'],
      ['confirm', /alerts .* by e-mail/, true],
      ['input', /recipients/, 'ops@example.com, boss@example.com'],
      ['input', /Sender/, ''],
      ['input', /SMTP relay host/, 'smtp.example.com'],
      ['input', /SMTP port/, '587'],
      ['confirm', /need a login/, true],
      ['input', /SMTP user/, 'vigil'],
      ['password', /SMTP password/, 'smtp-pw'],
      ['password', /same password again/, 'smtp-pw'],
      ['select', /HTTPS on port 443/, 'own'],
      ['input', /Certificate file/, join(pemDir, 'site.crt')],
      ['input', /private key file/, join(pemDir, 'site.key')],
      ['password', /SSH password of root/, 'ssh-pw'],
      ['confirm', /same password on every machine/, false],
      ['password', /on observer/, 'pw-observer'],
      ['password', /on app1/, ''],
      ['password', /on app2/, 'pw-app2'],
    ]);
    const said: string[] = [];
    const answers = await runWizard(p, { say: (l) => said.push(l) });
    assert.equal(p.left(), 0, 'every question asked');
    assert.ok(said.includes('The two passwords differ; once more.'));
    assert.deepEqual(
      answers.machines.map((m) => [m.name, m.address, m.sshPassword]),
      [
        ['observer', '10.0.0.10', 'pw-observer'],
        ['app1', '10.0.0.11', undefined],
        ['app2', '10.0.0.12', 'pw-app2'],
      ],
    );
    assert.equal(answers.ssh.password, undefined);
    const r = renderInit(answers);
    assert.equal(r.cluster.cluster.name, 'desk');
    assert.deepEqual(
      r.cluster.machines.map((m) => m.sshPort),
      [2222, 2222, 2222],
    );
    assert.equal(r.cluster.database.replication, 'asynchronous');
    assert.equal(r.cluster.database.postgresVersion, 16);
    assert.deepEqual(r.cluster.alerts.email, {
      to: ['ops@example.com', 'boss@example.com'],
      from: 'vigil@example.com',
      smtp: { host: 'smtp.example.com', port: 587, user: 'vigil', secure: false, starttls: 'required', timeoutMs: 10000 },
    });
    const s = parseSecrets(r.secretsYaml, 's');
    assert.equal(s.appDbPassword, 'app-db-password');
    assert.equal(s.smtpPassword, 'smtp-pw');
    assert.deepEqual(r.generated, ['postgres', 'replication', 'patroniRest']);
    assert.deepEqual(
      [r.cluster.proxy.tlsBundle, r.cluster.proxy.tlsCertificate, r.cluster.proxy.tlsKey],
      ['/etc/vigil/tls/proxy.pem', join(pemDir, 'site.crt'), join(pemDir, 'site.key')],
    );
  });

  it('HTTPS from the cluster CA with the names users type; a certificate file that is not there, or a bad name, is asked again', async () => {
    const base: Step[] = [
      ['select', /Topology/, 'pair'],
      ['input', /Cluster name/, ''],
      ['input', /SSH user/, ''],
      ['input', /SSH port/, ''],
      ['input', /Address of observer/, '10.0.0.10'],
      ['input', /Address of app1/, '10.0.0.11'],
      ['input', /Address of app2/, '10.0.0.12'],
      ['select', /replication/, 'synchronous'],
      ['input', /PostgreSQL/, ''],
      ['password', /Application database password/, ''],
      ['confirm', /e-mail/, false],
    ];
    const ca = await runWizard(scripted([...base, ['select', /HTTPS/, 'ca'], ['input', /DNS names/, 'servicedesk.example.com, help.example.com']]), {
      noSsh: true,
    });
    const cluster = renderInit(ca).cluster;
    assert.deepEqual(
      [cluster.proxy.tlsBundle, cluster.proxy.tlsDnsNames, cluster.proxy.tlsCertificate],
      ['/etc/vigil/tls/proxy.pem', ['servicedesk.example.com', 'help.example.com'], undefined],
    );
    assert.match(String(checkPemFile(join(pemDir, 'missing.crt'))), /missing\.crt does not exist/);
    assert.match(String(checkPemFile(pemDir)), /is not a file/);
    assert.equal(checkPemFile(join(pemDir, 'site.crt')), true);
    assert.match(String(checkDnsNames('servicedesk.example.com, not_a name')), /"not_a" is not a DNS name/);
    assert.equal(checkDnsNames(''), true, 'no names: the proxy address only');
  });

  it('builds a custom topology machine by machine, without SSH questions under --no-ssh', async () => {
    const p = scripted([
      ['select', /Topology/, 'custom'],
      ['input', /Cluster name/, ''],
      ['input', /SSH user/, 'deploy'],
      ['input', /SSH port/, ''],
      ['input', /Name of machine 1/, 'lb'],
      ['input', /Address of lb/, '10.0.0.10'],
      ['checkbox', /Roles of lb/, ['etcd', 'proxy', 'observer']],
      ['input', /Name of machine 2/, 'web1'],
      ['input', /Address of web1/, '10.0.0.11'],
      ['checkbox', /Roles of web1/, ['app', 'db']],
      ['input', /Name of machine 3/, 'web2'],
      ['input', /Address of web2/, '10.0.0.12'],
      ['checkbox', /Roles of web2/, ['app', 'db']],
      ['confirm', /Add another machine/, false],
      ['select', /replication/, 'synchronous'],
      ['input', /PostgreSQL/, ''],
      ['password', /Application database password/, ''],
      ['confirm', /e-mail/, false],
      ['select', /HTTPS/, 'none'],
    ]);
    const answers = await runWizard(p, { noSsh: true });
    assert.equal(p.left(), 0);
    const r = renderInit(answers);
    assert.deepEqual(
      r.cluster.machines.map((m) => [m.name, m.roles.join('+'), m.sshUser, m.sshPort]),
      [
        ['lb', 'etcd+proxy+observer', 'deploy', 22],
        ['web1', 'app+db', 'deploy', 22],
        ['web2', 'app+db', 'deploy', 22],
      ],
    );
    assert.equal(r.cluster.cluster.name, 'servicedesk');
    assert.equal(r.cluster.alerts.email, undefined);
    assert.equal(r.cluster.proxy.tlsBundle, undefined, 'port 80 only');
    assert.deepEqual(r.generated, ['postgres', 'replication', 'appDb', 'patroniRest']);
  });

  it('custom machines with etcd on none: two observer machines and a third get 3 members', async () => {
    const p = scripted([
      ['select', /Topology/, 'custom'],
      ['input', /Cluster name/, ''],
      ['input', /SSH user/, ''],
      ['input', /SSH port/, ''],
      ['input', /Name of machine 1/, 'lb1'],
      ['input', /Address of lb1/, '10.0.0.41'],
      ['checkbox', /Roles of lb1 \(leave etcd off every machine/, ['proxy', 'observer']],
      ['input', /Name of machine 2/, 'lb2'],
      ['input', /Address of lb2/, '10.0.0.42'],
      ['checkbox', /Roles of lb2/, ['proxy', 'observer']],
      ['input', /Name of machine 3/, 'web1'],
      ['input', /Address of web1/, '10.0.0.11'],
      ['checkbox', /Roles of web1/, ['app', 'db']],
      ['confirm', /Add another machine/, true],
      ['input', /Name of machine 4/, 'web2'],
      ['input', /Address of web2/, '10.0.0.12'],
      ['checkbox', /Roles of web2/, ['app', 'db']],
      ['confirm', /Add another machine/, false],
      ['select', /replication/, 'synchronous'],
      ['input', /PostgreSQL/, ''],
      ['password', /Application database password/, ''],
      ['confirm', /e-mail/, false],
      ['select', /HTTPS/, 'none'],
    ]);
    const answers = await runWizard(p, { noSsh: true });
    assert.equal(p.left(), 0);
    const r = renderInit({ ...answers, sections: { ...answers.sections, proxy: { virtualAddress: '10.0.0.40' } } });
    assert.deepEqual(
      r.cluster.machines.map((m) => [m.name, m.roles.join('+')]),
      [
        ['lb1', 'proxy+observer+etcd'],
        ['lb2', 'proxy+observer+etcd'],
        ['web1', 'app+db+etcd'],
        ['web2', 'app+db'],
      ],
    );
  });
});

/** Types into an inquirer prompt: waits until the output shows `prompt`, then writes the keys. */
class Terminal {
  readonly input = new PassThrough();
  readonly output = new PassThrough();
  private screen = '';
  private seen = 0;
  constructor() {
    this.output.on('data', (d: Buffer) => (this.screen += d.toString()));
  }
  async answer(prompt: string, keys: string): Promise<void> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const at = this.screen.indexOf(prompt, this.seen);
      if (at >= 0) {
        this.seen = at + prompt.length;
        break;
      }
      if (Date.now() > deadline) assert.fail(`the prompt "${prompt}" did not appear; screen:\n${this.screen.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 20)); // inquirer starts reading after it rendered
    this.input.write(keys);
  }
  text(): string {
    return this.screen;
  }
}

const ENTER = '\r';
const DOWN = '\x1b[B';

describe('init wizard on a terminal (@inquirer/prompts on injected streams)', { skip: sshdUnavailable() ?? false, timeout: 60_000 }, () => {
  const password = 'wizard-ssh-password';
  let sshd: TestSshd;
  let dir = '';
  before(async () => {
    sshd = await startTestSshd({ password, listen: ['127.0.0.1', '127.0.0.2', '127.0.0.3'] });
    dir = await mkdtemp(join(tmpdir(), 'vigil-wizard-'));
  });
  after(async () => {
    await sshd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('types the answers, confirms each fingerprint, and writes a cluster whose machines are pinned and keyed', async () => {
    const term = new Terminal();
    const prompter = inquirerPrompter({ input: term.input, output: term.output });
    const said: string[] = [];
    const done = runInit({ dir: join(dir, 'typed'), ssh: true }, { say: (l) => said.push(l), interactive: true, prompter });
    await term.answer('Topology', ENTER); // pair, the default
    await term.answer('Cluster name', ENTER);
    await term.answer('SSH user', ENTER);
    await term.answer('SSH port', `\x7f\x7f${sshd.port}${ENTER}`); // erase the default 22
    await term.answer('Address of observer', `127.0.0.1${ENTER}`);
    await term.answer('Address of app1', `127.0.0.1${ENTER}`); // taken: refused, typed again
    await term.answer('another machine has this address', `\x7f2${ENTER}`);
    await term.answer('Address of app2', `127.0.0.3${ENTER}`);
    await term.answer('Database replication', `${DOWN}${ENTER}`);
    await term.answer('PostgreSQL major version', ENTER);
    await term.answer('Application database password', ENTER);
    await term.answer('by e-mail', `n${ENTER}`);
    await term.answer('HTTPS on port 443', ENTER); // from the cluster CA, the default
    await term.answer('DNS names', `servicedesk.example.com${ENTER}`);
    await term.answer('SSH password of root', `${password}${ENTER}`);
    await term.answer('same password on every machine', ENTER);
    await term.answer('Write the files', ENTER);
    for (const name of ['observer', 'app1', 'app2']) await term.answer(`${name} (127.0.0.`, `y${ENTER}`);
    assert.equal(await done, 0);
    assert.ok(!term.text().includes(password), 'the password is masked on the screen');
    const known = await readFile(join(dir, 'typed', 'vigil.known_hosts'), 'utf8');
    assert.equal(known.trim().split('\n').length, 3);
    assert.ok(
      said.some((l) => /observer admin key installed for root; the password is not kept/.test(l)),
      said.join('\n'),
    );
    assert.match(await readFile(join(dir, 'typed', 'vigil.yaml'), 'utf8'), /replication: asynchronous/);
    assert.match(await readFile(join(dir, 'typed', 'vigil.yaml'), 'utf8'), /tlsDnsNames:\s*\n\s*- servicedesk\.example\.com/);
  });

  it('writes nothing when a fingerprint is refused', async () => {
    const term = new Terminal();
    const prompter = inquirerPrompter({ input: term.input, output: term.output });
    const done = runInit({ dir: join(dir, 'refused'), ssh: true, answers: undefined, topology: undefined }, { say: () => {}, interactive: true, prompter });
    await term.answer('Topology', ENTER);
    await term.answer('Cluster name', ENTER);
    await term.answer('SSH user', ENTER);
    await term.answer('SSH port', `\x7f\x7f${sshd.port}${ENTER}`);
    await term.answer('Address of observer', `127.0.0.1${ENTER}`);
    await term.answer('Address of app1', `127.0.0.2${ENTER}`);
    await term.answer('Address of app2', `127.0.0.3${ENTER}`);
    await term.answer('Database replication', ENTER);
    await term.answer('PostgreSQL major version', ENTER);
    await term.answer('Application database password', ENTER);
    await term.answer('by e-mail', `n${ENTER}`);
    await term.answer('HTTPS on port 443', `${DOWN}${DOWN}${ENTER}`); // port 80 only
    await term.answer('SSH password of root', ENTER);
    await term.answer('Write the files', ENTER);
    await term.answer('observer (127.0.0.1', `n${ENTER}`);
    await assert.rejects(done, (err: unknown) => err instanceof VigilError && err.code === 'SSH_HOST_KEY' && /was not accepted/.test(err.message));
    await assert.rejects(readFile(join(dir, 'refused', 'vigil.yaml')), { code: 'ENOENT' });
  });
});
