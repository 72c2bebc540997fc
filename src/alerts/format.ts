/**
 * What an alert says: the e-mail subject and body, and the webhook's JSON. Pure functions, so
 * the wording is tested without a mail server.
 */
import type { VigilEvent } from '../model/ha.ts';

/** Events of one kind held back by the rate limit and folded into the alert that follows. */
export interface Suppressed {
  /** How many were held back. */
  count: number;
  /** Time (ISO) of the first one held back. */
  since: string;
  /** The rate limit window, in seconds, for the wording. */
  windowSeconds: number;
}

/** The webhook body. `event` is the VigilEvent as recorded; `suppressed` only when some were. */
export interface WebhookPayload {
  cluster: string;
  event: VigilEvent;
  suppressed?: Suppressed;
}

// Header and subject text must stay on one line whatever an event carries.
const oneLine = (s: string, max = 200): string => {
  const flat = s.replace(/[\r\n\t]+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
};

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/**
 * Who the event is about. For a failover or switchover the observer records the new active
 * machine as `node` and the old one as `details.from`, so the subject reads `app1 -> app2`.
 */
function who(e: VigilEvent): string | undefined {
  const from = str(e.details?.from) ?? str(e.details?.previous);
  if ((e.type === 'failover' || e.type === 'switchover') && from && e.node) return `${from} -> ${e.node}`;
  return e.node;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) ? v : undefined);

/**
 * What an air-gap event's alert names beside the machine: the bundle's sequence (marked when the
 * bundle was refused before its signature held) and, for a refusal, the code.
 */
export function airgapFacts(e: VigilEvent): { sequence?: string; code?: string; from?: string } {
  if (e.type !== 'airgap-import' && e.type !== 'airgap-refused') return {};
  const seq = num(e.details?.sequence);
  return {
    ...(seq === undefined ? {} : { sequence: `${seq}${e.details?.sequenceVerified === false ? ' (unverified)' : ''}` }),
    ...(e.type === 'airgap-refused' ? { code: str(e.details?.code) ?? 'unknown' } : {}),
    ...(str(e.details?.from) ? { from: str(e.details?.from) } : {}),
  };
}

/**
 * `[vigil prod] failover: app1 -> app2 (epoch 4)`, plus `(+3 held back)` after a rate limit; an
 * air-gap event: `[vigil prod] airgap-refused: sequence 7 on app1 [AIRGAP_OLDER]`.
 */
export function subjectOf(cluster: string, e: VigilEvent, suppressed?: Suppressed): string {
  const target = who(e);
  let s = `[vigil ${cluster}] ${e.type}`;
  const ag = airgapFacts(e);
  if (e.type === 'airgap-import' || e.type === 'airgap-refused') {
    const what = [ag.sequence ? `sequence ${ag.sequence}` : 'bundle', target ? `on ${target}` : ag.from ? `from ${ag.from}` : ''].filter(Boolean).join(' ');
    s += `: ${what}${ag.code ? ` [${ag.code}]` : ''}`;
  } else if (target) s += `: ${target}`;
  if (e.epoch !== undefined) s += ` (epoch ${e.epoch})`;
  if (suppressed && suppressed.count > 0) s += ` (+${suppressed.count} held back)`;
  return oneLine(s);
}

/** The plain-text body: what happened, when, where, the details, and what to run next. */
export function bodyOf(cluster: string, e: VigilEvent, suppressed?: Suppressed): string {
  const rows: [string, string | undefined][] = [
    ['Cluster', cluster],
    ['Event', e.type],
    ['Time', e.at],
    ['Machine', who(e)],
    ['Epoch', e.epoch === undefined ? undefined : String(e.epoch)],
    ['Sequence', e.seq === undefined ? undefined : String(e.seq)],
    ['Bundle', airgapFacts(e).sequence === undefined ? undefined : `sequence ${airgapFacts(e).sequence}`],
    ['Refusal', airgapFacts(e).code],
    ['From', airgapFacts(e).from],
  ];
  const lines = [e.message, ''];
  for (const [k, v] of rows) if (v !== undefined) lines.push(`${`${k}:`.padEnd(10)}${v}`);
  if (suppressed && suppressed.count > 0) {
    lines.push(
      '',
      `${suppressed.count} more ${e.type} event(s)${e.node ? ` for ${e.node}` : ''} since ${suppressed.since} were held back`,
      `(at most one alert per event type and machine every ${suppressed.windowSeconds} s); this is the latest.`,
    );
  }
  if (e.details && Object.keys(e.details).length > 0) {
    lines.push(
      '',
      'Details:',
      ...JSON.stringify(e.details, null, 2)
        .split('\n')
        .map((l) => `  ${l}`),
    );
  }
  lines.push(
    '',
    'To see more, run on a machine of the cluster:',
    '  vigil status     the state of every machine, and why',
    '  vigil events     the history of events, this one included',
    ...(e.type === 'airgap-import' || e.type === 'airgap-refused' ? ['  vigil airgap status   which bundle every app machine holds'] : []),
    '',
    `-- sent by the Vigil observer of cluster ${cluster}`,
    '',
  );
  return lines.join('\n');
}
