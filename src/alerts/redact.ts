/**
 * Scrubbing secrets out of error text. Relays and HTTP endpoints sometimes echo what they
 * received (an AUTH line, a header), and library errors may quote a command; whatever reaches a
 * log line or an AlertResult goes through here first.
 */

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/**
 * A function that replaces every form a secret can take on the wire: as is, URL-encoded,
 * base64 (AUTH LOGIN), and for an SMTP login the base64 of the PLAIN token `\0user\0password`.
 */
export function redactor(secrets: (string | undefined)[], smtpUser?: string): (text: string) => string {
  const forms = new Set<string>();
  for (const s of secrets) {
    if (!s) continue;
    forms.add(s);
    forms.add(encodeURIComponent(s));
    forms.add(b64(s));
    if (smtpUser) {
      forms.add(b64(`\0${smtpUser}\0${s}`));
      forms.add(b64(`${smtpUser}\0${smtpUser}\0${s}`));
    }
  }
  // Longest first, so a base64 form is not half-replaced by a shorter secret inside it.
  const list = [...forms].sort((a, b) => b.length - a.length);
  return (text) => list.reduce((t, f) => t.split(f).join('[redacted]'), text);
}
