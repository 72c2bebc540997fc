/**
 * Unit files on a bare lab machine, as systemd finds them: the machine's own /etc/systemd/system
 * first (bind-mounted from its directory, src/lab/paths.ts), then the distribution's unit
 * directories, which are this host's (the packages installed here: a unit there is known but
 * never enabled, as if its package had been installed with the service disabled). A symlink to
 * /dev/null masks a unit; a symlink to another unit file is an alias of it. Enabling is a symlink
 * in /etc/systemd/system/<target>.wants, as `systemctl enable` makes it.
 *
 * Shared by the manager (which loads units) and systemctl (which enables and disables them
 * without the manager, as the real one can).
 */
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ROOTS } from '../../config/paths.ts';
import { validUnitName, type InstallInfo } from './unit.ts';

/** Where units are looked up, first match wins. */
export const UNIT_DIRS = ['/etc/systemd/system', '/usr/local/lib/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'];
/** The administrator's unit directory: what apply writes, where enable links. */
export const ETC_UNITS = UNIT_DIRS[0]!;
/** The target the lab's "boot" starts: the units linked in its .wants (or .requires) directory. */
export const BOOT_TARGET = 'multi-user.target';
/** The lab's journal: each unit's output, and the manager's own log. */
export const LOG_DIR = ROOTS.log;
export const MANAGER_LOG = join(LOG_DIR, 'lab-init.log');

/**
 * Where a unit's stdout and stderr go: /var/log/vigil/<name>.log with the `vigil-` prefix and the
 * `.service` suffix dropped (vigil-observer.service: observer.log), the names the lab's logs have
 * always had; Debian's ssh.service logs as sshd.
 */
/**
 * Each unit's active state as a one-word file, rewritten by the manager at every change: the
 * shim answers `systemctl is-active [--quiet] UNIT.service` from it without starting node (the
 * agent asks twice a second per application unit; through node each answer cost ~150 ms of CPU).
 */
export const STATE_DIR = join(ROOTS.run, 'lab-init', 'active');

export function unitLogPath(unit: string): string {
  const short = unit.replace(/\.service$/, '').replace(/^vigil-/, '');
  return join(LOG_DIR, `${short === 'ssh' ? 'sshd' : short}.log`);
}

export interface UnitFile {
  /** The unit's own name (an alias resolves to the unit it points to). */
  name: string;
  /** The main file (systemd's FragmentPath); undefined when masked. */
  path?: string;
  masked: boolean;
  /** Drop-ins (<name>.d/*.conf), in the order they apply. */
  dropIns: string[];
}

/** Finds a unit's file; undefined when no directory has it. */
export function findUnitFile(name: string, depth = 0): UnitFile | undefined {
  if (!validUnitName(name)) return undefined; // never a path out of the unit directories
  for (const dir of UNIT_DIRS) {
    const path = join(dir, name);
    let st;
    try {
      st = lstatSync(path);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) {
      const target = resolve(dir, readlinkSync(path));
      if (target === '/dev/null') return { name, masked: true, dropIns: [] };
      const real = basename(target);
      if (real !== name && real.endsWith('.service') && depth < 8) {
        // An alias (e.g. sshd.service -> ssh.service): the unit is the one it points to.
        const aliased = findUnitFile(real, depth + 1);
        if (aliased) return aliased;
      }
      try {
        if (!statSync(target).isFile()) continue;
      } catch {
        continue; // a dangling link
      }
      return { name, path: target, masked: false, dropIns: dropInsOf(name) };
    }
    if (st.isFile()) return { name, path, masked: false, dropIns: dropInsOf(name) };
  }
  return undefined;
}

/** <name>.d/*.conf from every unit directory, by file name; the first directory wins a name. */
function dropInsOf(name: string): string[] {
  const byName = new Map<string, string>();
  for (const dir of UNIT_DIRS) {
    let entries: string[];
    try {
      entries = readdirSync(join(dir, `${name}.d`));
    } catch {
      continue;
    }
    for (const e of entries) if (e.endsWith('.conf') && !byName.has(e)) byName.set(e, join(dir, `${name}.d`, e));
  }
  return [...byName.keys()].sort().map((k) => byName.get(k)!);
}

/** The unit's text: the main file followed by its drop-ins (each starts with its own section). */
export function readUnitText(f: UnitFile): string {
  return [f.path!, ...f.dropIns].map((p) => readFileSync(p, 'utf8')).join('\n');
}

/** A stamp of the unit's files (path, size, mtime): a different one means they changed on disk. */
export function unitStamp(f: UnitFile | undefined): string {
  if (!f || f.masked) return JSON.stringify(f?.masked ?? null);
  return JSON.stringify(
    [f.path!, ...f.dropIns].map((p) => {
      try {
        const st = statSync(p);
        return [p, st.size, st.mtimeMs];
      } catch {
        return [p];
      }
    }),
  );
}

/** The units enabled for the boot: the links in the boot target's .wants and .requires. */
export function bootUnits(): string[] {
  const out = new Set<string>();
  for (const kind of ['wants', 'requires'])
    for (const e of safeReaddir(join(ETC_UNITS, `${BOOT_TARGET}.${kind}`))) if (e.endsWith('.service')) out.add(e);
  return [...out].sort();
}

/** The .wants/.requires links in /etc/systemd/system that name a unit (or one of its aliases). */
function enablementLinks(names: string[]): string[] {
  const out: string[] = [];
  for (const d of safeReaddir(ETC_UNITS)) {
    if (!d.endsWith('.wants') && !d.endsWith('.requires')) continue;
    for (const n of names) {
      const link = join(ETC_UNITS, d, n);
      try {
        if (lstatSync(link).isSymbolicLink()) out.push(link);
      } catch {
        // not there
      }
    }
  }
  return out;
}

export type FileState = 'enabled' | 'disabled' | 'static' | 'masked';

/** systemctl is-enabled's answer for a unit file (undefined: no such unit file). */
export function fileState(name: string, install: InstallInfo | undefined): FileState | undefined {
  const f = findUnitFile(name);
  if (!f) return undefined;
  if (f.masked) return 'masked';
  if (enablementLinks([f.name, ...(install?.alias ?? [])]).length) return 'enabled';
  if (!install || (install.wantedBy.length === 0 && install.requiredBy.length === 0 && install.alias.length === 0)) return 'static';
  return 'disabled';
}

/** Creates the links `systemctl enable` creates; returns a line for each, as systemctl prints it. */
export function enableLinks(f: UnitFile, install: InstallInfo): string[] {
  const out: string[] = [];
  const link = (at: string) => {
    try {
      const st = lstatSync(at);
      if (st.isSymbolicLink() && resolve(dirname(at), readlinkSync(at)) === f.path) return; // already there
      rmSync(at);
    } catch {
      // not there yet
    }
    mkdirSync(dirname(at), { recursive: true, mode: 0o755 });
    symlinkSync(f.path!, at);
    out.push(`Created symlink ${at} \u2192 ${f.path}.`);
  };
  for (const a of install.alias) if (join(ETC_UNITS, a) !== f.path) link(join(ETC_UNITS, a));
  for (const t of install.wantedBy) link(join(ETC_UNITS, `${t}.wants`, f.name));
  for (const t of install.requiredBy) link(join(ETC_UNITS, `${t}.requires`, f.name));
  return out;
}

/** Removes what `systemctl disable` removes: the enablement links and the alias links. */
export function disableLinks(f: UnitFile, install: Pick<InstallInfo, 'alias'> | undefined): string[] {
  const out: string[] = [];
  const names = [f.name, ...(install?.alias ?? [])];
  const aliases = (install?.alias ?? []).map((a) => join(ETC_UNITS, a)).filter((p) => {
    try {
      return lstatSync(p).isSymbolicLink() && p !== f.path;
    } catch {
      return false;
    }
  });
  for (const link of [...aliases, ...enablementLinks(names)]) {
    rmSync(link, { force: true });
    out.push(`Removed "${link}".`);
  }
  return out;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
