/**
 * A lab machine's log of one of its daemons, wherever the machine keeps it: on a machine the lab
 * runs itself, the file the lab writes (`/var/log/vigil/NAME.log`); on a machine that boots
 * systemd, the unit's journal (`journalctl -u vigil-NAME.service`, or `ssh.service` for sshd).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LabShell } from '../remote/lab.ts';
import { isBooted } from './boot.ts';
import { hostRoot } from './paths.ts';

const UNIT_OF: Record<string, string> = { sshd: 'ssh.service' };

export async function readMachineLog(host: string, name: string): Promise<string> {
  if (!isBooted(host)) return readFile(join(hostRoot(host), 'log', `${name}.log`), 'utf8').catch(() => '');
  const unit = UNIT_OF[name] ?? `vigil-${name}.service`;
  const r = await new LabShell(host).exec(['journalctl', '-u', unit, '-o', 'cat', '--no-pager'], { timeoutMs: 60_000 }).catch(() => undefined);
  return r?.code === 0 ? r.stdout : '';
}
