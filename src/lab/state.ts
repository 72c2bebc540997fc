/** The lab's record of itself: what `lab up` made, so every other lab command (and `down`) can find it. */
import { readFile, writeFile, rename } from 'node:fs/promises';
import type { Role } from '../config/schema.ts';
import { VigilError, problem } from '../util/errors.ts';
import { statePath } from './paths.ts';
import type { LabShape } from './topology.ts';
import type { RootfsPackages } from './rootfs.ts';

export interface LabState {
  version: 1;
  shape: LabShape;
  machines: { name: string; address: string; roles: Role[] }[];
  createdAt: string;
  /** `lab up --bare`: the machines run only sshd, waiting for `vigil init` and `vigil apply`. */
  bare?: boolean;
  /** Versions of the release's root filesystem the machines run on (absent: this host's packages). */
  packages?: RootfsPackages;
}

export async function readState(): Promise<LabState | undefined> {
  try {
    return JSON.parse(await readFile(statePath(), 'utf8')) as LabState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function requireState(): Promise<LabState> {
  const s = await readState();
  if (!s) throw new VigilError('LAB_NOT_RUNNING', [problem(statePath(), 'no lab is up', 'start one with `vigil lab up --topology distributed`')]);
  return s;
}

export async function writeState(s: LabState): Promise<void> {
  const tmp = `${statePath()}.tmp`;
  await writeFile(tmp, JSON.stringify(s, null, 2));
  await rename(tmp, statePath());
}

export function machineOf(s: LabState, host: string) {
  const m = s.machines.find((x) => x.name === host);
  if (!m) throw new VigilError('USAGE', [problem(host, 'no such lab machine', `use one of: ${s.machines.map((x) => x.name).join(', ')}`)]);
  return m;
}
