/**
 * `vigil init`, end to end: answers from a file and flags (non-interactive) or from the wizard,
 * rendered and checked, then written with the machines contacted (write.ts). The CLI wiring
 * (src/cli/init.ts) only parses options and hands them here.
 */
import { join, resolve } from 'node:path';
import { dotted, type Locator } from '../config/cross-checks.ts';
import { KNOWN_HOSTS_FILE, type ScannedHostKey, type SshTarget } from '../remote/ssh.ts';
import { VigilError, problem } from '../util/errors.ts';
import { flagLocator, loadAnswersData, type InitAnswers } from './answers.ts';
import { CLUSTER_FILE, SECRETS_FILE, checkAnswers, initEtcdPlacement, renderInit } from './render.ts';
import { inquirerPrompter, runWizard, type Prompter } from './wizard.ts';
import { pinOnly, writeInit, type HostKeyDecision, type InitResult } from './write.ts';

export interface InitOptions {
  dir: string;
  answers?: string;
  force?: boolean;
  acceptHostKeys?: boolean;
  /** false with --no-ssh. */
  ssh: boolean;
  pinOnly?: boolean;
  sshPasswordStdin?: boolean;
  topology?: string;
  name?: string;
  machine?: string[];
  sshUser?: string;
  sshPort?: string;
  emailTo?: string;
  emailFrom?: string;
  smtpHost?: string;
  smtpPort?: string;
  connectTimeoutMs?: number;
}

export interface InitIo {
  say: (line: string) => void;
  /** Whether questions can be asked (stdin is a terminal). */
  interactive: boolean;
  /** The prompter for the wizard and host-key questions (default: @inquirer/prompts on the process's streams). */
  prompter?: Prompter;
  /** All of stdin, for --ssh-password-stdin. */
  readStdin?: () => Promise<string>;
}

const ANSWER_FLAGS = ['topology', 'name', 'machine', 'sshUser', 'sshPort', 'emailTo', 'emailFrom', 'smtpHost', 'smtpPort'] as const;

type Data = Record<string, unknown>;
const obj = (v: unknown): Data => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Data) : {});
const num = (v: string): number | string => (/^\d+$/.test(v) ? Number(v) : v);

/** Merges the answer flags into the answers data; returns the paths each flag set, for messages. */
function mergeFlags(data: Data, o: InitOptions): Map<string, string> {
  const set = new Map<string, string>();
  const put = (path: string[], value: unknown, flag: string) => {
    let node = data;
    for (const seg of path.slice(0, -1)) node = node[seg] = obj(node[seg]);
    node[path[path.length - 1]!] = value;
    set.set(dotted(path), flag);
  };
  if (o.topology !== undefined) put(['topology'], o.topology, '--topology');
  if (o.name !== undefined) put(['cluster', 'name'], o.name, '--name');
  for (const spec of o.machine ?? []) {
    const m = /^([^=]+)=([^:]+)(?::(.+))?$/.exec(spec);
    if (!m)
      throw new VigilError('USAGE', [
        problem(
          `--machine ${spec}`,
          'is not NAME=ADDRESS or NAME=ADDRESS:ROLE,ROLE',
          'write e.g. --machine app1=10.0.0.11, or --machine db3=10.0.0.23:db for a machine the preset does not name',
        ),
      ]);
    const [, name, address, roles] = m;
    const flag = `--machine ${name}=…`;
    put(['machines', name!, 'address'], address, flag);
    if (roles) put(['machines', name!, 'roles'], roles.split(','), flag);
    set.set(dotted(['machines', name!]), flag);
  }
  if (o.sshUser !== undefined) put(['ssh', 'user'], o.sshUser, '--ssh-user');
  if (o.sshPort !== undefined) put(['ssh', 'port'], num(o.sshPort), '--ssh-port');
  if (o.emailTo !== undefined)
    put(
      ['alerts', 'email', 'to'],
      o.emailTo.split(',').map((s) => s.trim()),
      '--email-to',
    );
  if (o.emailFrom !== undefined) put(['alerts', 'email', 'from'], o.emailFrom, '--email-from');
  if (o.smtpHost !== undefined) put(['alerts', 'email', 'smtp', 'host'], o.smtpHost, '--smtp-host');
  if (o.smtpPort !== undefined) put(['alerts', 'email', 'smtp', 'port'], num(o.smtpPort), '--smtp-port');
  return set;
}

/** The answers of the non-interactive form: the answers file (if any), the flags over it, the SSH password from stdin. */
export async function nonInteractiveAnswers(o: InitOptions, readStdin?: () => Promise<string>): Promise<{ answers: InitAnswers; loc: Locator }> {
  const base = o.answers
    ? await loadAnswersData(o.answers)
    : { data: {}, loc: { at: (p: readonly PropertyKey[]) => `command line${p.length ? ` ${dotted(p)}` : ''}`, has: () => false } };
  const data = obj(base.data);
  const flags = mergeFlags(data, o);
  if (o.sshPasswordStdin) {
    if (!readStdin)
      throw new VigilError('USAGE', [
        problem('--ssh-password-stdin', 'stdin cannot be read here', 'pipe the password in: `vigil init ... --ssh-password-stdin < password-file`'),
      ]);
    const pw = (await readStdin()).replace(/\r?\n$/, '');
    if (pw === '')
      throw new VigilError('USAGE', [
        problem('--ssh-password-stdin', 'stdin held no password', 'pipe the SSH password in, e.g. `--ssh-password-stdin < password-file`'),
      ]);
    data.ssh = { ...obj(data.ssh), password: pw };
    flags.set('ssh.password', '--ssh-password-stdin');
  }
  // A problem with a value a flag set points at the flag (the longest matching path wins).
  const loc = flagLocator((path) => {
    for (let n = path.length; n > 0; n--) {
      const flag = flags.get(dotted(path.slice(0, n)));
      if (flag) return `${flag} (${dotted(path)})`;
    }
    return undefined;
  }, base.loc);
  return { answers: checkAnswers(data, loc), loc };
}

function hostKeyQuestion(p: Prompter): HostKeyDecision {
  return (key: ScannedHostKey, t: SshTarget) =>
    p.confirm({
      message: `${t.machine} (${t.address}:${t.port}) offers the ${key.type} host key ${key.fingerprint}. Is this the machine's key? (on its console: ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub)`,
      default: false,
    });
}

function report(r: InitResult, say: (line: string) => void): void {
  say(`written in ${r.dir}:`);
  const modes: Record<string, string> = {
    [CLUSTER_FILE]: '644  the cluster',
    [SECRETS_FILE]: '600  passwords (keep private, back up)',
    [KNOWN_HOSTS_FILE]: '644  pinned SSH host keys (OpenSSH format)',
    pki: '755  ca.pem 644, ca.key 600 (never leaves this machine), admin.pem 644, admin.key 600',
    ssh: "700  id_ed25519 600, id_ed25519.pub 644 (Vigil's admin SSH key)",
  };
  for (const name of r.written) say(`  ${name.padEnd(20)} ${modes[name] ?? ''}`);
  if (r.backup) say(`the files replaced (--force) are kept in ${r.backup}`);
  const noKey = r.machines.filter((m) => m.key === 'not-installed');
  if (noKey.length > 0) {
    say('the admin key is not installed on these machines (no password was given); install it once, e.g.:');
    for (const m of noKey)
      say(`  ssh-copy-id -i ${join(r.dir, 'ssh/id_ed25519.pub')} -p ${m.port} -o UserKnownHostsFile=${join(r.dir, KNOWN_HOSTS_FILE)} <user>@${m.address}`);
  }
  if (r.machines.every((m) => m.pin === 'skipped')) say('no machine was contacted (--no-ssh): pin the host keys later with `vigil init --pin-only`');
  say(`next: \`vigil validate ${join(r.dir, CLUSTER_FILE)}\``);
}

/** Runs `vigil init`; returns the exit status. */
export async function runInit(o: InitOptions, io: InitIo): Promise<number> {
  const say = io.say;
  const prompter = () => io.prompter ?? inquirerPrompter();
  const timeout = o.connectTimeoutMs ? { connectTimeoutMs: o.connectTimeoutMs } : {};
  const confirmKeys = (): HostKeyDecision => {
    if (o.acceptHostKeys) return () => true;
    if (io.interactive) return hostKeyQuestion(prompter());
    throw new VigilError('INIT', [
      problem(
        'vigil init',
        "pinning the machines' SSH host keys needs a decision, and there is no terminal to ask on",
        'pass --accept-host-keys to pin the keys the machines offer now (compare the printed fingerprints with the machines), or --no-ssh to contact no machine',
      ),
    ]);
  };

  if (o.pinOnly) {
    if (!o.ssh) throw new VigilError('USAGE', [problem('--pin-only', 'contacts the machines, which --no-ssh forbids', 'leave out --no-ssh')]);
    const pins = await pinOnly(resolve(o.dir), { confirm: confirmKeys(), progress: say, ...timeout });
    say(
      `${pins.filter((p) => p.pin === 'pinned').length} host key(s) pinned, ${pins.filter((p) => p.pin === 'already-pinned').length} already pinned and checked`,
    );
    return 0;
  }

  const flagsGiven = ANSWER_FLAGS.some((f) => o[f] !== undefined);
  let answers: InitAnswers;
  let loc: Locator | undefined;
  if (o.answers || flagsGiven || o.sshPasswordStdin) {
    // Decided before anything is read or contacted, so automation fails at once.
    const decide = o.ssh ? confirmKeys() : undefined;
    ({ answers, loc } = await nonInteractiveAnswers(o, io.readStdin));
    const rendered = renderInit(answers, { loc });
    const etcd = initEtcdPlacement(answers);
    if (etcd) say(etcd.why);
    const r = await writeInit(rendered, answers, {
      dir: o.dir,
      force: o.force ?? false,
      ssh: decide ? { confirm: decide, ...timeout } : 'skip',
      progress: say,
    });
    report(r, say);
    return 0;
  }
  if (!io.interactive) {
    throw new VigilError('USAGE', [
      problem(
        'vigil init',
        'no answers: there is no terminal to ask on and no --answers file',
        'pass --answers answers.yaml (format in docs/init.md), or run it on a terminal for the questions',
      ),
    ]);
  }
  const p = prompter();
  answers = await runWizard(p, { say, noSsh: !o.ssh });
  const rendered = renderInit(answers);
  const etcd = initEtcdPlacement(answers);
  if (etcd) say(etcd.why);
  say(
    `cluster "${rendered.cluster.cluster.name}", ${rendered.cluster.topology}: ${rendered.cluster.machines.map((m) => `${m.name} ${m.address} [${m.roles.join(',')}]`).join('; ')}`,
  );
  if (!(await p.confirm({ message: `Write the files into ${resolve(o.dir)}${o.ssh ? ' and contact the machines' : ''}?`, default: true }))) {
    say('nothing written');
    return 1;
  }
  const r = await writeInit(rendered, answers, {
    dir: o.dir,
    force: o.force ?? false,
    ssh: o.ssh ? { confirm: confirmKeys(), ...timeout } : 'skip',
    progress: say,
  });
  report(r, say);
  return 0;
}
