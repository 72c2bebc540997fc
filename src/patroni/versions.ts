/**
 * What Vigil knows about Patroni versions that matters for safety, shared by the agent (which
 * protects against it), preflight and doctor (which say so).
 *
 * Patroni 3.0.0 to 3.0.2 renew the leader key in etcd (v3 API) with a plain put whenever their
 * lease changed. One that was paused (the process, PostgreSQL under it, or the machine) resumes
 * with its cached view, still believing it leads, and overwrites the key a new leader has taken
 * meanwhile: the new primary steps down and is rewound, and every write it acknowledged is lost.
 * From 3.0.3 the key is written in a transaction (its value must still be this member's name, or
 * the key must be absent), so a stale leader fails and demotes itself (patroni/patroni#2689).
 */

/** The first release that writes its leader key in a transaction. */
export const PATRONI_LEADER_TXN = '3.0.3';

/** "patroni 3.0.2" (what `patroni --version` prints), "3.0.2-1" (a package version) -> [3, 0, 2]; [] if none. */
export function parsePatroniVersion(text: string): number[] {
  const m = /(?:^|\s|:)(\d+)\.(\d+)(?:\.(\d+))?/.exec(text.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : [];
}

/** Whether this Patroni version can overwrite a new leader's key after a pause. Unknown versions are not assumed either way: false. */
export function overwritesLeaderKey(version: number[]): boolean {
  if (version.length === 0) return false;
  const [a = 0, b = 0, c = 0] = version;
  return a === 3 && b === 0 && c < 3;
}

/** The finding preflight and doctor give for such a version (warn: Vigil's agent covers it; upgrading closes it). */
export function leaderKeyFinding(version: string, machine: string): { what: string; why: string; fix: string } {
  return {
    what: `Patroni ${version} on ${machine} renews its leader key in etcd with a plain write: after a pause it can take the key back from a newer primary`,
    why: `without protection the new primary steps down and every write it acknowledged is lost; Vigil's agent on ${machine} ends such a stale primary and holds Patroni's way to etcd closed after a whole-machine stall until it has looked, but a virtual machine paused by its hypervisor is still exposed (docs/failure-semantics.md, "A stale primary")`,
    fix: `install Patroni ${PATRONI_LEADER_TXN} or newer on ${machine} (the PGDG repository, apt.postgresql.org or download.postgresql.org, or a local mirror of it), then run \`vigil apply\``,
  };
}
