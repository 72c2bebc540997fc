/**
 * The fixes doctor's findings give in the lab: the commands of src/doctor/fixes.ts's systemd
 * machines run through `vigil lab exec`, or `vigil lab` commands, all on the lab's host from the
 * checkout. Supplied to doctor by src/lab/target.ts; no fix ever carries a secret.
 */
import { commandLine, shellQuote, type Fixes } from '../doctor/fixes.ts';
import { UNITS } from '../layout/units.ts';

/** Fixes in the lab: `vigil lab` commands run on the lab's host, with the lab's id when it is not 0. */
export function labFixes(labId: number, paths: { secretsFile: string; hostPath(machine: string, path: string): string }): Fixes {
  const env = labId === 0 ? '' : `VIGIL_LAB_ID=${labId} `;
  const lab = `${env}vigil lab`;
  return {
    platform: 'lab',
    on: (machine, argv) => `${lab} exec ${machine} -- ${commandLine(argv)}`,
    vigil: (args) => `${env}vigil ${commandLine(args)} --lab`,
    unreachable: (m) => `${lab} revive ${m.name}`,
    syncClock: () => "lab machines share this host's clock: `timedatectl set-ntp true` here",
    start(machine, what) {
      // The agent starts nginx and the app on the active machine; a restarted agent tries again.
      if (what === 'nginx') return `${lab} exec ${machine} -- systemctl restart ${UNITS.agent}`;
      return `${lab} start ${machine} ${what}`;
    },
    stopStray: (machine, proc) => `${lab} exec ${machine} -- ${proc.unit ? `systemctl disable --now ${shellQuote(proc.unit)}` : `kill ${proc.pid}`}`,
    stopService: (machine, service) => `${lab} exec ${machine} -- systemctl stop ${shellQuote(service.unit)}`,
    openPort: () => `${lab} heal (removes every cut and every blocked port)`,
    reinstall: (machine, what) => `${lab} down && ${lab} up (a lab machine gets ${what} only when the lab is built; ${machine} is rebuilt with the others)`,
    // The lab has no `vigil apply`; the value must not go through a command line, so: an editor.
    setPassword: (machine, f) =>
      `edit ${shellQuote(paths.hostPath(machine, f.path))} and set ${f.key} to the value of appDbPassword in ${shellQuote(paths.secretsFile)}`,
  };
}
