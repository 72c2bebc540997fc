/**
 * The words of the dashboard's actions, shared by the server (src/dashboard/actions.ts) and the
 * page's script (client/app.ts, which runs in the browser: nothing here may import Node): the
 * kinds, what the operator types to confirm, and the same action from a shell.
 */
export const ACTION_KINDS = ['switchover', 'failover', 'maintenance-on', 'maintenance-off'] as const;
export type ActionKind = (typeof ACTION_KINDS)[number];

/** What the operator must type to confirm: the target machine's name, or the word `maintenance`. */
export function expectedConfirmation(a: { kind: ActionKind; to?: string }): string {
  return a.kind.startsWith('maintenance') ? 'maintenance' : (a.to ?? 'switchover');
}

/** The same action from a shell, shown on the page. */
export function equivalentCommand(a: { kind: ActionKind; to?: string; reason: string }): string {
  const quoted = `'${a.reason.replace(/'/g, `'\\''`)}'`;
  switch (a.kind) {
    case 'switchover':
      return `vigil switchover${a.to ? ` --to ${a.to}` : ''}`;
    case 'failover':
      return `vigil failover --to ${a.to ?? 'MACHINE'}`;
    case 'maintenance-on':
      return `vigil maintenance on --reason ${quoted}`;
    case 'maintenance-off':
      return 'vigil maintenance off';
  }
}
