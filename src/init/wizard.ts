/**
 * The interactive `vigil init`: asks what the vendor's installers ask (topology, SSH user and
 * port, each machine's address and role, the passwords a person may actually need to give, the
 * alert e-mail), once, in one place, and returns the same answers an answers file gives.
 * Passwords Vigil can make up (PostgreSQL superuser, replication, Patroni REST) are not asked.
 *
 * Questions go through a small `Prompter` so tests can script them; the real one is
 * @inquirer/prompts with injectable input and output streams.
 */
import { checkbox, confirm, input, password, select } from '@inquirer/prompts';
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { z } from 'zod';
import { PATHS } from '../layout/paths.ts';
import { clusterFileSchema, machineSchema, PRESET_ROLES, ROLES, type Role, type Topology } from '../config/schema.ts';
import type { InitAnswers, MachineAnswer } from './answers.ts';

export interface Choice<T extends string> {
  value: T;
  name: string;
  description?: string;
  checked?: boolean;
}

/** Answers `true` or an explanation of what to type instead. */
export type Check = (value: string) => true | string;

export interface Prompter {
  select<T extends string>(q: { message: string; choices: Choice<T>[]; default?: T }): Promise<T>;
  input(q: { message: string; default?: string; validate?: Check }): Promise<string>;
  /** Hidden input. */
  password(q: { message: string; validate?: Check }): Promise<string>;
  confirm(q: { message: string; default?: boolean }): Promise<boolean>;
  checkbox<T extends string>(q: { message: string; choices: Choice<T>[]; validate?: (values: T[]) => true | string }): Promise<T[]>;
}

export interface PromptIo {
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
}

/** The real prompter: @inquirer/prompts, on the given streams (default the process's). */
export function inquirerPrompter(io: PromptIo = {}): Prompter {
  // Each prompt ends the output stream it was given when it is done (harmless for process.stdout,
  // which never closes): give it a stream of its own that forwards to the real one.
  const forward = (out: NodeJS.WritableStream) => {
    const p = new PassThrough();
    p.pipe(out, { end: false });
    return p;
  };
  const context = () => ({ ...(io.input ? { input: io.input } : {}), ...(io.output ? { output: forward(io.output) } : {}) });
  return {
    select: <T extends string>(q: { message: string; choices: Choice<T>[]; default?: T }) =>
      select<T>(
        {
          message: q.message,
          choices: q.choices.map((c) => ({ value: c.value, name: c.name, ...(c.description ? { description: c.description } : {}) })),
          ...(q.default !== undefined ? { default: q.default } : {}),
        },
        context(),
      ),
    input: (q) =>
      input({ message: q.message, ...(q.default !== undefined ? { default: q.default } : {}), ...(q.validate ? { validate: q.validate } : {}) }, context()),
    password: (q) => password({ message: q.message, mask: '*', ...(q.validate ? { validate: q.validate } : {}) }, context()),
    confirm: (q) => confirm({ message: q.message, ...(q.default !== undefined ? { default: q.default } : {}) }, context()),
    checkbox: <T extends string>(q: { message: string; choices: Choice<T>[]; validate?: (values: T[]) => true | string }) =>
      checkbox<T>(
        {
          message: q.message,
          choices: q.choices.map((c) => ({ value: c.value, name: c.name, ...(c.checked ? { checked: true } : {}) })),
          ...(q.validate ? { validate: (items: readonly { value: T }[]) => q.validate!(items.map((i) => i.value)) } : {}),
        },
        context(),
      ),
  };
}

// ---------------------------------------------------------------- checks (the schema's own rules)

/** Same rule as the cluster schema's names. */
const NAME_RE = /^[a-z][a-z0-9-]{0,30}$/;
const email = z.email();

const checkName: Check = (v) => NAME_RE.test(v) || 'lower case letters, digits and dashes, starting with a letter (at most 31), e.g. servicedesk';
const checkPort: Check = (v) => (/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 65535) || 'a port number from 1 to 65535';
const checkAddress =
  (taken: Set<string>): Check =>
  (v) => {
    if (!machineSchema.shape.address.safeParse(v).success) return 'an IPv4 address such as 10.0.0.11';
    return !taken.has(v) || 'another machine has this address';
  };
const checkEmails: Check = (v) => {
  const list = splitList(v);
  if (list.length === 0) return 'at least one address, e.g. ops@example.com';
  const bad = list.find((a) => !email.safeParse(a).success);
  return bad === undefined || `"${bad}" is not an e-mail address`;
};
const checkEmail: Check = (v) => email.safeParse(v).success || 'an address such as vigil@example.com';
const checkHost: Check = (v) => /^[A-Za-z0-9.:-]+$/.test(v) || 'a host name or address, e.g. smtp.example.com';
const checkVersion: Check = (v) => (/^\d+$/.test(v) && Number(v) >= 13 && Number(v) <= 18) || 'a PostgreSQL major version from 13 to 18';
const minLength =
  (n: number): Check =>
  (v) =>
    v.length >= n || `at least ${n} characters`;

const splitList = (v: string) => v.split(/[\s,]+/).filter(Boolean);
const dnsName = clusterFileSchema.shape.proxy.unwrap().shape.tlsDnsNames.unwrap().element;
export const checkDnsNames: Check = (v) => {
  const bad = splitList(v).find((n) => !dnsName.safeParse(n).success);
  return bad === undefined || `"${bad}" is not a DNS name; write names such as servicedesk.example.com, or nothing`;
};
export const checkPemFile: Check = (v) => {
  if (!existsSync(v)) return `${resolve(v)} does not exist`;
  return statSync(v).isFile() || `${resolve(v)} is not a file`;
};

// ---------------------------------------------------------------- the wizard

export interface WizardOptions {
  /** Informational lines between questions. */
  say?: (line: string) => void;
  /** --no-ssh: do not ask for SSH passwords (machines are not contacted). */
  noSsh?: boolean;
}

const TOPOLOGY_CHOICES: Choice<Topology>[] = [
  { value: 'pair', name: 'pair: 3 machines', description: 'observer (etcd, HAProxy, observer); app1 and app2, each the application and PostgreSQL' },
  { value: 'distributed', name: 'distributed: 5 machines', description: 'observer (etcd, HAProxy, observer); app1, app2 (application); db1, db2 (PostgreSQL)' },
  {
    value: 'custom',
    name: 'custom: any machines, with their roles',
    description: '1, 3, 5 or 7 etcd members, any number of app and db machines, several observers',
  },
];

/** Asks a password twice (as the vendor's installers do) until both agree; '' when left empty and `optional`. */
async function newPassword(p: Prompter, say: (line: string) => void, message: string, opts: { optional: boolean; min: number }): Promise<string> {
  for (;;) {
    const first = await p.password({ message, validate: (v) => (opts.optional && v === '') || minLength(opts.min)(v) });
    if (first === '') return '';
    const again = await p.password({ message: 'The same password again' });
    if (again === first) return first;
    say('The two passwords differ; once more.');
  }
}

async function customMachines(p: Prompter, taken: Set<string>): Promise<MachineAnswer[]> {
  const out: MachineAnswer[] = [];
  const names = new Set<string>();
  for (;;) {
    const name = await p.input({
      message: `Name of machine ${out.length + 1}`,
      default: out.length === 0 ? 'observer' : `m${out.length + 1}`,
      validate: (v) => (names.has(v) ? 'another machine has this name' : checkName(v)),
    });
    const address = await p.input({ message: `Address of ${name}`, validate: checkAddress(taken) });
    const roles = await p.checkbox<Role>({
      // etcd left off every machine: init places it (3 members with two observer machines and a third machine: src/init/etcd-members.ts).
      message: `Roles of ${name} (leave etcd off every machine and Vigil places 1 or 3 members)`,
      choices: ROLES.map((r) => ({ value: r, name: r })),
      validate: (v) => v.length > 0 || 'pick at least one role',
    });
    names.add(name);
    taken.add(address);
    out.push({ name, address, roles });
    if (out.length >= 3 && !(await p.confirm({ message: 'Add another machine?', default: false }))) return out;
  }
}

/** Runs the questions; returns the answers (checked afterwards as an answers file is). */
export async function runWizard(p: Prompter, opts: WizardOptions = {}): Promise<InitAnswers> {
  const say = opts.say ?? (() => {});
  say("Vigil init: a few questions, then it writes vigil.yaml, the secrets file, the cluster CA and an SSH key, and pins each machine's SSH host key.");
  const topology = await p.select<Topology>({ message: 'Topology', choices: TOPOLOGY_CHOICES, default: 'pair' });
  const clusterName = await p.input({ message: 'Cluster name (the Patroni scope and etcd prefix)', default: 'servicedesk', validate: checkName });
  const user = await p.input({
    message: 'SSH user Vigil logs in as (root, or a user with passwordless sudo)',
    default: 'root',
    validate: (v) => /^[a-z_][a-z0-9_.-]*\$?$/i.test(v) || 'a user name such as root',
  });
  const port = Number(await p.input({ message: 'SSH port', default: '22', validate: checkPort }));

  const taken = new Set<string>();
  let machines: MachineAnswer[];
  if (topology === 'custom') machines = await customMachines(p, taken);
  else {
    machines = [];
    for (const [name, roles] of Object.entries(PRESET_ROLES[topology])) {
      const address = await p.input({ message: `Address of ${name} (${roles.join(', ')})`, validate: checkAddress(taken) });
      taken.add(address);
      machines.push({ name, address });
    }
  }

  const replication = await p.select<'synchronous' | 'asynchronous'>({
    message: 'Database replication',
    choices: [
      { value: 'synchronous', name: 'synchronous: no acknowledged write is ever lost on failover' },
      { value: 'asynchronous', name: 'asynchronous: faster writes; a failover may lose the last writes (bounded)' },
    ],
    default: 'synchronous',
  });
  const postgresVersion = Number(await p.input({ message: 'PostgreSQL major version on the database machines', default: '15', validate: checkVersion }));

  const passwords: InitAnswers['passwords'] = {};
  say("Database passwords are generated. Only the application's may need to be given: the one its config files already hold, if it is installed.");
  const appDb = await newPassword(p, say, 'Application database password (Enter: generate one)', { optional: true, min: 8 });
  if (appDb) passwords.appDb = appDb;

  const sections: InitAnswers['sections'] = { database: { replication, postgresVersion } };
  if (await p.confirm({ message: 'Send alerts (failover, fencing, a machine lost) by e-mail?', default: true })) {
    const to = splitList(await p.input({ message: 'Alert recipients (comma separated)', validate: checkEmails }));
    const domain = to[0]!.split('@')[1]!;
    const from = await p.input({ message: 'Sender address', default: `vigil@${domain}`, validate: checkEmail });
    const host = await p.input({ message: 'SMTP relay host', validate: checkHost });
    const smtpPort = Number(await p.input({ message: 'SMTP port', default: '25', validate: checkPort }));
    const smtp: Record<string, unknown> = { host, port: smtpPort };
    if (await p.confirm({ message: 'Does the relay need a login?', default: false })) {
      smtp.user = await p.input({ message: 'SMTP user', validate: (v) => v.length > 0 || 'the login name' });
      passwords.smtp = await newPassword(p, say, 'SMTP password', { optional: false, min: 1 });
      // A password is only sent under verified TLS: SMTPS on 465, STARTTLS required elsewhere.
      if (smtpPort === 465) smtp.secure = true;
      else smtp.starttls = 'required';
    }
    sections.alerts = { email: { to: to.length === 1 ? to[0] : to, from, smtp } };
  }

  const tls = await p.select<'ca' | 'own' | 'none'>({
    message: 'HTTPS on port 443 through HAProxy',
    choices: [
      {
        value: 'ca',
        name: 'yes, with a certificate from the cluster CA',
        description: 'vigil apply issues it; browsers trust it once pki/ca.pem is installed as a trusted CA',
      },
      {
        value: 'own',
        name: 'yes, with my certificate and key',
        description: 'PEM files on this machine, e.g. from your company CA; vigil apply puts them on the proxy',
      },
      { value: 'none', name: 'no: port 80 only' },
    ],
    default: 'ca',
  });
  if (tls === 'ca') {
    const names = splitList(
      await p.input({
        message: 'DNS names users reach the application by (comma separated; Enter: none, the proxy address only)',
        default: '',
        validate: checkDnsNames,
      }),
    );
    sections.proxy = { tlsBundle: PATHS.tlsBundle, ...(names.length ? { tlsDnsNames: names } : {}) };
  } else if (tls === 'own') {
    const tlsCertificate = resolve(await p.input({ message: 'Certificate file (PEM, then any intermediate certificates)', validate: checkPemFile }));
    const tlsKey = resolve(await p.input({ message: 'Its private key file (PEM, no passphrase, mode 600)', validate: checkPemFile }));
    sections.proxy = { tlsBundle: PATHS.tlsBundle, tlsCertificate, tlsKey };
  }

  const ssh: InitAnswers['ssh'] = { user, port };
  if (!opts.noSsh) {
    say(`Vigil logs in with its own key. A password installs that key on each machine once and is not kept; leave it empty if you install the key yourself.`);
    const pw = await p.password({ message: `SSH password of ${user} (Enter: none)` });
    if (pw !== '') {
      if (await p.confirm({ message: 'The same password on every machine?', default: true })) ssh.password = pw;
      else {
        for (const m of machines) {
          const own = await p.password({ message: `SSH password of ${user} on ${m.name} (Enter: none)` });
          if (own !== '') m.sshPassword = own;
        }
      }
    }
  }
  return { clusterName, topology, ssh, machines, sections, passwords };
}
