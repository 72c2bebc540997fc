/** A unit's messages from a bare lab machine's own systemd journal (`journalctl -u`), for lab tests. */
import { LabShell } from '../../src/lab/shell.ts';

export interface JournalLine {
  /** Wall-clock time of the message, in ms since the epoch. */
  atMs: number;
  message: string;
}

export async function unitJournal(machine: string, unit: string, sinceMs = 0): Promise<JournalLine[]> {
  const r = await new LabShell(machine).exec(
    ['journalctl', '-u', unit, '-o', 'json', '--no-pager', '--output-fields=MESSAGE', '--since', `@${Math.floor(sinceMs / 1000)}`],
    { timeoutMs: 60_000 },
  );
  if (r.code !== 0) throw new Error(`journalctl -u ${unit} on ${machine} exited with ${r.code}: ${r.stderr.trim()}`);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { MESSAGE?: unknown; __REALTIME_TIMESTAMP?: string })
    .map((e) => ({ atMs: Number(e.__REALTIME_TIMESTAMP) / 1000, message: typeof e.MESSAGE === 'string' ? e.MESSAGE : '' }))
    .filter((e) => e.atMs >= sinceMs);
}

/** Prints what units said between two wall-clock times, as `# machine unit time message` lines: to explain a failure in CI's output. */
export async function printJournals(units: [machine: string, unit: string][], fromMs: number, toMs: number): Promise<void> {
  for (const [machine, unit] of units) {
    const lines = (await unitJournal(machine, unit, fromMs).catch((err: Error) => [{ atMs: fromMs, message: `(journal unreadable: ${err.message})` }])).filter(
      (l) => l.atMs <= toMs,
    );
    for (const l of lines) console.log(`# ${machine} ${unit} ${new Date(l.atMs).toISOString()} ${l.message.slice(0, 300)}`);
  }
}
