/**
 * The dashboard's Actions page (docs/dashboard.md): switchover, manual failover, maintenance on
 * and off. What the page shows before one (`actionsView`, from `vigil status --json`'s
 * ClusterStatus), what a form must say (`parseAction`: the target, the epoch it was decided on,
 * the typed confirmation, a reason), and carrying it out (`carryOut`) on etcd, as the CLI does:
 * a request the leading observer carries out, or the maintenance flag.
 *
 * Every action names the active record's epoch the operator saw. `carryOut` refuses it when the
 * record has moved since, and a request carries the epoch so the observer refuses it too if the
 * record moves between the two (src/observer/decide.ts).
 */
import { randomUUID } from 'node:crypto';
import { withRole, type Cluster } from '../config/schema.ts';
import type { VigilStore } from '../etcd/store.ts';
import type { OperatorRequest } from '../model/ha.ts';
import type { ClusterStatus } from '../ops/status.ts';

import { ACTION_KINDS, expectedConfirmation, type ActionKind } from './action-words.ts';

export { ACTION_KINDS, equivalentCommand, expectedConfirmation, type ActionKind } from './action-words.ts';

export interface ActionCandidate {
  name: string;
  active: boolean;
  /** Its agent answers and confirmed the active record within its lease: it can take over. */
  ready: boolean;
  /** Why it is not ready, or what it is. */
  standing: string;
  /** Its Patroni member: role, state and lag; '' for a machine without the db role. */
  database: string;
  /** Files the active machine still has to push to it; null when file sync does not report. */
  syncBacklog: number | null;
  syncError: string | null;
}

export interface ActionsView {
  /** The active record's epoch: what every form carries back. */
  epoch: number | null;
  active: string | null;
  maintenance: { since: string; by: string; reason: string } | null;
  /** An observer leads: without one, a request waits for nobody. */
  observerLeads: boolean;
  /** The app machines. */
  machines: ActionCandidate[];
}

export function actionsView(s: ClusterStatus): ActionsView {
  const pushing = s.machines.find((m) => m.agent?.sync?.role === 'pushing')?.agent?.sync?.peers ?? [];
  return {
    epoch: s.active?.epoch ?? null,
    active: s.active?.node ?? null,
    maintenance: s.maintenance ? { since: s.maintenance.since, by: s.maintenance.by, reason: s.maintenance.reason } : null,
    observerLeads: s.observerLeader !== null,
    machines: s.machines
      .filter((m) => m.roles.includes('app'))
      .map((m) => {
        const a = m.agent;
        const active = s.active?.node === m.name;
        const ready = a !== null && a.ready && !active;
        const standing = active
          ? a?.active
            ? 'active, serving'
            : 'active in the record, not serving'
          : !a
            ? 'its agent does not answer'
            : a.ready
              ? 'standby, ready'
              : 'standby, not ready: its agent has not confirmed the active record within its lease';
        const p = a?.patroni;
        const peer = pushing.find((x) => x.node === m.name);
        return {
          name: m.name,
          active,
          ready,
          standing,
          database: m.roles.includes('db') ? (p ? `${p.role} ${p.state}${p.lagBytes ? `, lag ${p.lagBytes} B` : ''}` : 'unknown') : '',
          syncBacklog: peer ? peer.backlog : null,
          syncError: peer?.error ? peer.error.message : null,
        };
      }),
  };
}

/** A form as the page posts it, checked. */
export interface ActionForm {
  kind: ActionKind;
  /** switchover (optional: the observer picks a ready standby) and failover (required). */
  to?: string;
  /** The epoch the operator decided on; null when the cluster had no active record. */
  epoch: number | null;
  reason: string;
}

export const MAX_REASON = 200;

/** A person's text from a form as one line: control characters become spaces, runs of spaces one, the ends trimmed. */
export function oneLine(text: string): string {
  return [...text]
    .map((c) => (c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f ? ' ' : c))
    .join('')
    .replace(/ {2,}/g, ' ')
    .trim();
}

/** Checks a posted form; the error names the field and what it must hold. */
export function parseAction(form: URLSearchParams, cluster: Cluster): ActionForm | { error: string } {
  const kind = form.get('kind') ?? '';
  if (!(ACTION_KINDS as readonly string[]).includes(kind)) return { error: `the field \`kind\` must be one of ${ACTION_KINDS.join(', ')}` };
  const k = kind as ActionKind;
  const epochText = form.get('epoch') ?? '';
  if (!/^(none|\d{1,15})$/.test(epochText)) return { error: 'the field `epoch` must be the epoch the page showed (a number, or `none`)' };
  const epoch = epochText === 'none' ? null : Number(epochText);
  const reason = oneLine(form.get('reason') ?? '');
  if (k !== 'maintenance-off' && (reason.length === 0 || reason.length > MAX_REASON))
    return { error: `the field \`reason\` must say why, in 1 to ${MAX_REASON} characters` };
  const toText = form.get('to') ?? '';
  const apps = withRole(cluster, 'app').map((m) => m.name);
  if (toText !== '' && !apps.includes(toText)) return { error: `the field \`to\` must name an app machine of this cluster (${apps.join(', ')})` };
  if (k === 'failover' && toText === '') return { error: 'a failover needs the machine to make active (field `to`)' };
  const to = k === 'switchover' || k === 'failover' ? toText || undefined : undefined;
  const expected = expectedConfirmation({ kind: k, ...(to ? { to } : {}) });
  if ((form.get('confirm') ?? '').trim() !== expected) return { error: `type \`${expected}\` in the confirmation field (\`confirm\`) to confirm` };
  return { kind: k, ...(to ? { to } : {}), epoch, reason };
}

export type ActResult = { ok: true; message: string } | { ok: false; status: number; message: string };

/** Carries out a checked action for `user`; refuses it when the active record moved since the page showed it. */
export async function carryOut(store: VigilStore, a: ActionForm, user: string): Promise<ActResult> {
  const active = (await store.getActive({ timeoutMs: 3000 }))?.record ?? null;
  const now = active?.epoch ?? null;
  if (now !== a.epoch) {
    const where = active ? `${active.node} is active at epoch ${active.epoch}` : 'there is no active record';
    return {
      ok: false,
      status: 409,
      message: `the cluster has moved since the page showed it (decided at epoch ${a.epoch ?? 'none'}; now ${where}): look at the page again and decide anew`,
    };
  }
  const by = `${user} (dashboard)`;
  if (a.kind === 'maintenance-on') {
    const was = await store.getMaintenance({ timeoutMs: 3000 });
    await store.setMaintenance({ since: was?.since ?? new Date().toISOString(), by, reason: a.reason }, { timeoutMs: 3000 });
    return { ok: true, message: was ? 'maintenance was already on; its reason is updated' : 'maintenance is on: the observer takes no action until it ends' };
  }
  if (a.kind === 'maintenance-off') {
    const was = await store.clearMaintenance({ timeoutMs: 3000 });
    return { ok: true, message: was ? 'maintenance is off: the observer acts again' : 'maintenance was already off' };
  }
  if (!(await store.currentLeader({ timeoutMs: 3000 })))
    return { ok: false, status: 503, message: 'no observer leads: nobody would carry the request out; start an observer first' };
  const id = randomUUID().slice(0, 8);
  const stamp = { id, at: new Date().toISOString(), by, ...(a.epoch !== null ? { epoch: a.epoch } : {}) };
  // parseAction gives a failover its `to`.
  const req: OperatorRequest =
    a.kind === 'failover' ? { kind: 'failover', to: a.to!, ...stamp } : { kind: 'switchover', ...(a.to ? { to: a.to } : {}), ...stamp };
  const put = await store.putRequest(req, { timeoutMs: 3000 });
  if (!put) {
    const pending = await store.getRequest({ timeoutMs: 3000 });
    return {
      ok: false,
      status: 409,
      message: `another request is pending (${pending?.kind ?? '?'} ${pending?.id ?? ''}): wait for it to finish, then decide again`,
    };
  }
  return { ok: true, message: `${a.kind} request ${id}${a.to ? ` to ${a.to}` : ''} is with the observer` };
}
