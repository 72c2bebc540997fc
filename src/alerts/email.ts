/**
 * The e-mail channel: one message per alert through the configured SMTP relay (nodemailer).
 * One connection per message, no pool: alerts are rare, and a pooled connection the relay
 * dropped an hour ago would turn the first alert after a quiet spell into a failure.
 */
import nodemailer, { type NodemailerError } from 'nodemailer';
import type { VigilEvent } from '../model/ha.ts';
import type { AlertsConfig } from '../config/alerts.ts';
import { bodyOf, subjectOf, type Suppressed } from './format.ts';
import { redactor } from './redact.ts';
import type { Channel } from './send.ts';

type EmailConfig = NonNullable<AlertsConfig['email']>;

/** What to check, by nodemailer error code; the message says what failed, this says where to look. */
const HINTS: Record<string, string> = {
  EAUTH: 'check alerts.email.smtp.user and smtpPassword in the secrets file',
  ENOAUTH: 'set alerts.email.smtp.user and smtpPassword in the secrets file',
  ECONNECTION: 'check alerts.email.smtp.host and port, and that this machine may reach the relay',
  ESOCKET: 'check alerts.email.smtp.host and port, and that this machine may reach the relay',
  EDNS: 'check alerts.email.smtp.host; the name does not resolve on this machine',
  ETIMEDOUT: 'the relay did not answer in time; check alerts.email.smtp.host and port, or raise alerts.email.smtp.timeoutMs',
  ETLS: 'TLS with the relay failed; check alerts.email.smtp.secure and starttls (a self-signed relay certificate works only with starttls: opportunistic)',
  EENVELOPE: 'the relay refused the sender or the recipients; check alerts.email.from and to',
};

export function emailChannel(cfg: EmailConfig, password: string | undefined, cluster: string): Channel {
  const { smtp } = cfg;
  const where = `SMTP ${smtp.host}:${smtp.port}`;
  const redact = redactor([password], smtp.user);
  const implicit = smtp.secure;
  const transport = nodemailer.createTransport({
    host: smtp.host,
    port: smtp.port,
    secure: implicit,
    requireTLS: !implicit && smtp.starttls === 'required',
    ignoreTLS: !implicit && smtp.starttls === 'off',
    // Opportunistic STARTTLS is only a guard against eavesdropping: an attacker in the path can
    // strip the STARTTLS offer anyway, so checking the certificate would add no protection and
    // would break on the self-signed certificate stock relays (Postfix's snakeoil) present.
    tls: { rejectUnauthorized: implicit || smtp.starttls === 'required' },
    auth: smtp.user && password ? { user: smtp.user, pass: password } : undefined,
    connectionTimeout: smtp.timeoutMs,
    greetingTimeout: smtp.timeoutMs,
    socketTimeout: smtp.timeoutMs,
    // After QUIT, do not keep the observer waiting on a relay that is slow to hang up.
    socketCloseTimeout: 1000,
    logger: false,
  });

  return {
    name: 'email',
    async send(event: VigilEvent, suppressed?: Suppressed) {
      // Sending without the login would only get a refusal (or, worse, be accepted unauthenticated
      // by an open relay): say what is missing instead.
      if (smtp.user && !password) throw new Error(`${where}: alerts.email.smtp.user is set but the secrets file has no smtpPassword; add it`);
      try {
        const info = await transport.sendMail({
          from: { name: `Vigil ${cluster}`, address: cfg.from },
          to: cfg.to,
          subject: subjectOf(cluster, event, suppressed),
          text: bodyOf(cluster, event, suppressed),
          headers: {
            // RFC 3834: keeps vacation auto-replies from answering the observer.
            'Auto-Submitted': 'auto-generated',
            'X-Vigil-Cluster': cluster,
            'X-Vigil-Event': event.type,
          },
          // One deadline for the whole message, whichever step the relay stalls in.
          signal: AbortSignal.timeout(smtp.timeoutMs),
        });
        const rejected = info.rejected.map(String);
        if (rejected.length > 0)
          throw new Error(`${where}: the relay refused ${rejected.join(', ')} (the other recipients got the alert); check alerts.email.to`);
        return { attempts: 1 };
      } catch (err) {
        // A fresh error without `cause`: nodemailer's carries the AUTH command it sent.
        throw new Error(redact(describe(err, smtp, where)));
      }
    },
    close() {
      transport.close();
    },
  };
}

function describe(err: unknown, smtp: EmailConfig['smtp'], where: string): string {
  if (!(err instanceof Error)) return `${where}: ${String(err)}`;
  const e = err as NodemailerError;
  if (e.code === 'EABORT' || e.name === 'TimeoutError') return `${where}: no complete answer within ${smtp.timeoutMs} ms; ${HINTS.ETIMEDOUT}`;
  if (e.message.startsWith(where)) return e.message; // ours, already worded
  // OpenSSL messages span lines and name source files; the first line is the part that helps.
  const first = (e.message.split('\n')[0] ?? '').trim();
  const msg = first.replace(/^[0-9A-F]+:error:[0-9A-F]+:SSL routines:[^:]*:([^:]+):.*$/, 'TLS: $1');
  return `${where}: ${msg}; ${hintFor(e, msg, smtp)}`;
}

function hintFor(e: NodemailerError, msg: string, smtp: EmailConfig['smtp']): string {
  if (/wrong version number|packet length too long/i.test(msg) && smtp.secure) {
    return 'the relay does not speak TLS from the first byte on this port: use `secure: false` (ports 25, 587) or the SMTPS port (465)';
  }
  if (/certificate|self[- ]signed|unable to verify|altnames/i.test(msg)) {
    return "the relay's certificate must be valid and name alerts.email.smtp.host: renew it, give its CA to Node (NODE_EXTRA_CA_CERTS), or (without `secure`) use `starttls: opportunistic`";
  }
  if (/STARTTLS/i.test(msg) && smtp.starttls === 'required') return 'the relay does not offer STARTTLS, which `starttls: required` demands';
  if (e.code && HINTS[e.code]) return HINTS[e.code]!;
  if (e.code?.startsWith('ECONN')) return HINTS.ECONNECTION!;
  return 'check the alerts.email settings';
}
