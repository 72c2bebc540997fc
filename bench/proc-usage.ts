/**
 * A process's CPU time and resident memory from /proc (the lab's machines share the host's
 * kernel, so a daemon's pid is readable from here): bench/footprint.ts and bench/dashboard.ts.
 */
import { readFile } from 'node:fs/promises';
import { run } from '../src/util/exec.ts';

export interface Usage {
  cpuS: number;
  childCpuS: number;
  rssMiB: number;
}

const ticks = Number((await run('getconf', ['CLK_TCK'])).stdout.trim());

/** CPU seconds so far, its own and its waited-for children's, and resident memory in MiB; undefined once the process is gone. */
export async function usage(pid: number): Promise<Usage | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const rssKiB = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
    return { cpuS: (Number(f[11]) + Number(f[12])) / ticks, childCpuS: (Number(f[13]) + Number(f[14])) / ticks, rssMiB: rssKiB / 1024 };
  } catch {
    return undefined;
  }
}
