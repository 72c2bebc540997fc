/**
 * The `alerts` section of vigil.yaml and the two alert secrets (sent by src/alerts), wired into
 * the cluster schema by src/config/schema.ts; the `.describe()` texts
 * become docs/config-reference.md like every other section.
 */
import { z } from 'zod';
import { EVENT_TYPES, type EventType } from '../model/ha.ts';
import { problem, type Problem } from '../util/errors.ts';

/**
 * Events that alert unless `alerts.events` says otherwise: the ones a person must know about.
 * `bootstrap`, `activate` and `observer-leader` happen as part of these or of normal start-up
 * and would only add noise.
 */
export const DEFAULT_ALERT_EVENTS: readonly EventType[] = [
  'failover',
  'switchover',
  'fence',
  'node-lost',
  'node-back',
  'maintenance-on',
  'maintenance-off',
  'request-failed',
  'db-leader-released',
  'airgap-import',
  'airgap-refused',
];

const address = z.string().email({ message: 'must be an e-mail address such as ops@example.com' });

export const smtpSchema = z
  .strictObject({
    host: z.string().min(1).describe('SMTP relay host name or address.'),
    port: z.number().int().min(1).max(65535).default(25).describe('SMTP port (default 25; 587 for submission, 465 with `secure: true`).'),
    secure: z.boolean().default(false).describe('TLS from the first byte (SMTPS, usually port 465); the certificate is verified. Default false.'),
    starttls: z
      .enum(['required', 'opportunistic', 'off'])
      .default('opportunistic')
      .describe(
        'Without `secure`: `required` refuses to send unless the relay offers STARTTLS with a certificate valid for `host`; `opportunistic` (default) encrypts when the relay offers STARTTLS, without checking its certificate (stock relays often use a self-signed one), which guards against eavesdropping only; `off` never encrypts.',
      ),
    user: z
      .string()
      .min(1)
      .optional()
      .describe(
        "SMTP login; its password is `smtpPassword` in the secrets file. Without it no login is attempted. Needs `secure: true` or `starttls: required` (the relay's certificate verified), unless `host` is loopback: a password sent under opportunistic or no STARTTLS goes to whoever sits in the path.",
      ),
    timeoutMs: z.number().int().min(100).default(10000).describe("Deadline of one e-mail, from connecting to the relay's last reply (default 10000)."),
  })
  .superRefine((s, ctx) => {
    if (s.user !== undefined && !s.secure && s.starttls !== 'required' && !loopbackHost(s.host))
      ctx.addIssue({
        code: 'custom',
        path: ['starttls'],
        message: `with \`smtp.user\` set, \`${s.starttls}\` would send the SMTP password where an attacker in the path can strip STARTTLS or answer with any certificate`,
        params: {
          fix: 'write `starttls: required` (the relay must offer STARTTLS with a certificate valid for `host`), or `secure: true` with the SMTPS port (465), or remove `user` if the relay needs no login',
        },
      });
  })
  .describe('The SMTP relay alerts are sent through.');

/** A relay on this machine: a login to it never crosses the network. */
export const loopbackHost = (host: string): boolean => /^(localhost|127\.\d+\.\d+\.\d+|::1|\[::1\])$/i.test(host);

/** Whether a bearer token sent to this URL would cross the network unencrypted: http:// to anything but loopback. */
export function tokenInClear(raw: string): boolean {
  try {
    const url = new URL(raw);
    return url.protocol === 'http:' && !loopbackHost(url.hostname);
  } catch {
    return false;
  }
}

/** Query parameters whose name says they carry a credential (`?token=…`, `?api_key=…`, `?sig=…`). */
const CREDENTIAL_PARAM_RE = /(token|secret|passw|pwd|key|auth|sig|credential|session)/i;

/** Why a webhook URL must not be written in vigil.yaml (copied to every machine, mode 644), or undefined. */
export function webhookUrlCredential(raw: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return undefined; // the format check reports it
  }
  if (url.username !== '' || url.password !== '') return 'holds a user name or password (`user:password@`)';
  const names = [...url.searchParams.keys()].filter((k) => CREDENTIAL_PARAM_RE.test(k));
  if (names.length > 0) return `has a query parameter that looks like a credential (${names.join(', ')})`;
  return undefined;
}

export const emailAlertSchema = z
  .strictObject({
    to: z
      .union([address, z.array(address).min(1)])
      .transform((v) => (Array.isArray(v) ? v : [v]))
      .describe('Recipient address, or a list of them.'),
    from: address.describe('Sender address, e.g. vigil@example.com.'),
    smtp: smtpSchema,
  })
  .describe('Alerts by e-mail.');

export const webhookAlertSchema = z
  .strictObject({
    url: z
      .string()
      .url({ message: 'must be an http:// or https:// URL' })
      .refine((u) => /^https?:\/\//i.test(u), { message: 'must be an http:// or https:// URL' })
      .superRefine((u, ctx) => {
        const why = webhookUrlCredential(u);
        if (why)
          ctx.addIssue({
            code: 'custom',
            message: `${why}: vigil.yaml is copied to every machine readable by all, and URLs end up in logs`,
            params: {
              fix: 'remove the credential from the URL and put it in the secrets file as `webhookToken` (sent as `Authorization: Bearer <webhookToken>`); a receiver that only takes a token in the URL needs a relay that adds it',
            },
          });
      })
      .describe(
        'URL that receives each alert as a JSON POST `{ cluster, event, suppressed? }`; sent with `Authorization: Bearer <webhookToken>` when the secrets file has `webhookToken`.',
      ),
    timeoutMs: z
      .number()
      .int()
      .min(100)
      .default(5000)
      .describe('Deadline of one attempt (default 5000). A 5xx answer, a 429 or a network error is retried twice with backoff; other 4xx answers are not.'),
  })
  .describe('Alerts to an HTTP endpoint (chat bridge, ticketing, paging).');

export const alertsSchema = z
  .strictObject({
    email: emailAlertSchema.optional(),
    webhook: webhookAlertSchema.optional(),
    events: z
      .array(z.enum(EVENT_TYPES))
      .default([...DEFAULT_ALERT_EVENTS])
      .describe(`Events that send an alert (default ${DEFAULT_ALERT_EVENTS.join(', ')}).`),
    rateLimitSeconds: z
      .number()
      .int()
      .min(0)
      .default(60)
      .describe(
        'At most one alert per event type and machine in this many seconds (default 60; 0 sends every one). The latest held-back event is sent when the time is up, with the count of those held back. Air-gap imports and refusals (`airgap-import`, `airgap-refused`) are never held back.',
      ),
  })
  .prefault({})
  .describe('Where alerts go. With neither `email` nor `webhook`, events are only recorded (`vigil events`).');

/** The section as every other module reads it: defaults applied, `to` always a list. */
export type AlertsConfig = z.infer<typeof alertsSchema>;
/** The section as written in vigil.yaml. */
export type AlertsInput = z.input<typeof alertsSchema>;

/** Keys of the secrets file that alerts use; meant to be spread into the secrets schema. */
export const alertSecretsShape = {
  smtpPassword: z.string().min(1).optional().describe('Password of `alerts.email.smtp.user` on the SMTP relay.'),
  webhookToken: z.string().min(1).optional().describe('Bearer token sent to `alerts.webhook.url`.'),
};

export interface AlertSecrets {
  smtpPassword?: string | undefined;
  webhookToken?: string | undefined;
}

/**
 * Contradictions between the alerts section and the secrets file, for `vigil validate`. Never
 * quotes a secret. `file`/`secretsFile` name the files in the messages.
 */
export function alertProblems(alerts: AlertsConfig, secrets: AlertSecrets, file = 'vigil.yaml', secretsFile = 'the secrets file'): Problem[] {
  const out: Problem[] = [];
  const smtp = alerts.email?.smtp;
  if (smtp?.user && !secrets.smtpPassword) {
    out.push(
      problem(
        `${file} alerts.email.smtp.user`,
        `an SMTP login is set but ${secretsFile} has no smtpPassword`,
        `add \`smtpPassword: '...'\` to ${secretsFile}, or remove alerts.email.smtp.user if the relay needs no login`,
      ),
    );
  }
  if (secrets.smtpPassword && !smtp?.user) {
    out.push(
      problem(
        `${secretsFile} smtpPassword`,
        'an SMTP password is set but alerts.email.smtp.user is not, so it is never used',
        `set alerts.email.smtp.user in ${file}, or remove smtpPassword`,
      ),
    );
  }
  if (secrets.webhookToken && !alerts.webhook) {
    out.push(
      problem(
        `${secretsFile} webhookToken`,
        'a webhook token is set but alerts.webhook is not, so it is never used',
        `set alerts.webhook.url in ${file}, or remove webhookToken`,
      ),
    );
  }
  // Also a schema rule (with its line); repeated here for clusters built in code (init, tests).
  if (smtp && smtp.user && !smtp.secure && smtp.starttls !== 'required' && !loopbackHost(smtp.host)) {
    out.push(
      problem(
        `${file} alerts.email.smtp.starttls`,
        `with \`${smtp.starttls}\` the SMTP password can be read by an attacker in the path (STARTTLS stripped, or any certificate accepted)`,
        'use `starttls: required` or `secure: true`, or remove alerts.email.smtp.user if the relay needs no login',
      ),
    );
  }
  const hook = alerts.webhook;
  if (hook && secrets.webhookToken && tokenInClear(hook.url)) {
    out.push(
      problem(
        `${file} alerts.webhook.url`,
        `${secretsFile} has webhookToken, which would be sent in clear over http://`,
        'use an https:// URL for the receiver, or remove webhookToken if it needs none',
      ),
    );
  }
  return out;
}
