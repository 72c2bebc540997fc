/**
 * A lab machine's log of one of its daemons: the unit's journal on the machine
 * (`journalctl -u vigil-NAME.service`, `vigil-refapp.service` for app, `ssh.service` for sshd).
 */
import { LabShell } from './shell.ts';
import { LAB_UNITS } from './boot.ts';

export async function readMachineLog(host: string, name: string): Promise<string> {
  const unit = (LAB_UNITS as Record<string, string>)[name] ?? `vigil-${name}.service`;
  const r = await new LabShell(host).exec(['journalctl', '-u', unit, '-o', 'cat', '--no-pager'], { timeoutMs: 60_000 }).catch(() => undefined);
  return r?.code === 0 ? r.stdout : '';
}
