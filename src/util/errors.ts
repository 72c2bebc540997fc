/**
 * Errors Vigil shows to people. Every error carries a stable code (public API: never reused,
 * listed in docs/errors.md), a message that names the file, line, field or machine concerned,
 * the fix, and whether retrying can help.
 */
/** Every error code with what it means; docs/errors.md lists them all (a test checks it). */
export const ERROR_CODES = {
  CONFIG_READ: 'the cluster or secrets file cannot be read',
  CONFIG_YAML: 'a file is not valid YAML',
  CONFIG_INVALID: 'the YAML parsed, but a field is wrong or the fields contradict each other',
  SECRETS_INVALID: 'the secrets file lacks a key, has an unknown one, or is readable by others',
  TLS_BUNDLE: 'the certificate bundle is missing, mismatched, expired or too open',
  RENDER: 'a generated file failed its check',
  LAB: 'the lab could not do what was asked',
  LAB_NOT_RUNNING: 'a lab command needs a lab that is up',
  USAGE: 'the command line or an argument is wrong',
  CLUSTER_UNREACHABLE: 'etcd (the cluster state) cannot be reached from here',
  REQUEST_FAILED: 'the observer refused or could not carry out an operator request',
  REQUEST_TIMEOUT: 'no observer answered an operator request in time',
  SSH_UNREACHABLE: 'a machine does not answer on its SSH port',
  SSH_HOST_KEY: "a machine's SSH host key is not the one pinned for it",
  SSH_AUTH: 'SSH refused the password or key',
  REMOTE_COMMAND: 'a command run on a machine failed',
  INIT: '`vigil init` could not write the cluster files from its answers',
  APPLY: '`vigil apply` stopped at a step on a machine; the message names both and the fix, and a re-run resumes',
  SYNC: 'file sync could not carry files between app machines',
  ETCD_TIMEOUT: 'etcd did not answer within the deadline',
  ETCD_UNAVAILABLE: 'no etcd member could serve the request (down, unreachable, or no quorum)',
  ETCD_REFUSED: 'etcd refused the request: authentication or permission',
  ETCD_DATA: 'a key under the cluster prefix holds a value Vigil did not write, or a caller tried to write one',
  ETCD_CLOSED: 'the etcd store was used after it was closed (a bug)',
  ETCD_CANCELLED: 'the caller cancelled the etcd request',
  ETCD_FAILED: 'etcd returned an error Vigil does not know how to handle',
  NET_TLS: 'a mutual-TLS handshake failed: a certificate from another CA, none, or the wrong name or use',
  NET_REFUSED: 'nothing listens on the port (the daemon is down)',
  NET_TIMEOUT: 'a machine did not answer an HTTPS request in time',
  NET_ABORTED: 'the caller cancelled an HTTPS request',
  NET_FAILED: 'an HTTPS request failed in transport (reset, unreachable network)',
  EXEC: 'an external program failed, timed out or could not be started',
  HAPROXY_RUNTIME: "HAProxy's runtime API did not answer or refused a command",
  EVENT_FILE: 'an event reached etcd but not the local JSON-lines file',
  PATRONI_UNREACHABLE:
    "a member's Patroni REST API did not answer (Patroni down, machine down, or no route), or its TLS certificate is not one the cluster CA issued for it",
  PATRONI_TIMEOUT: "a member's Patroni REST API did not answer within the deadline",
  PATRONI_HTTP: 'Patroni answered with an error status (a switchover refused, a wrong REST password, ...); the message carries its answer',
  PATRONI_ANSWER: "Patroni's answer was not what its REST API sends (not JSON, or fields missing)",
  PATRONI_CANCELLED: 'a call to Patroni was cancelled by its caller',
  AGENT_UNREACHABLE: "a machine's agent API did not answer (agent down, machine down, or no route)",
  AGENT_TIMEOUT: "a machine's agent API did not answer within the deadline",
  AGENT_TLS: "the agent API's mutual TLS failed: a certificate not issued by this cluster's CA, or for another address or use",
  AGENT_HTTP: 'the agent answered with an error status (e.g. 403: this certificate may not fence)',
  AGENT_ANSWER: "the agent's answer was not what its API sends",
  AGENT_CANCELLED: 'a call to an agent was cancelled by its caller',
  AIRGAP_KEY: 'an air-gap signing key or trust file is missing, malformed, too open, or not the one the trust file names',
  AIRGAP_SOURCES: 'the air-gap sources file has a wrong line or field',
  AIRGAP_FETCH: 'a download failed or its content differs from its published SHA-256; nothing is left under its final name',
  AIRGAP_BUNDLE: 'a bundle could not be written from the directory given (a symlink, an unreadable file, a file that changed)',
  AIRGAP_INVALID: 'a bundle is malformed: its manifest or signature file is not what `vigil airgap bundle` writes',
  AIRGAP_UNSIGNED: 'a bundle carries no signature; nothing was imported',
  AIRGAP_UNTRUSTED_KEY: 'a bundle is signed by a key the trust file does not trust; nothing was imported',
  AIRGAP_BAD_SIGNATURE: 'a bundle manifest does not match its signature (tampered); nothing was imported',
  AIRGAP_TAMPERED: "a bundle's part or file differs from its signed manifest; nothing was imported",
  AIRGAP_EXPIRED: 'a bundle is past its expiry; nothing was imported',
  AIRGAP_OLDER: 'a bundle is older than (or another bundle with) the last imported sequence; nothing was imported',
  AIRGAP_INCOMPLETE: 'a part of a bundle is missing or cannot be read; nothing was imported',
  AIRGAP_FOREIGN_PART: 'a part file belongs to another bundle or stands at the wrong place; nothing was imported',
  AIRGAP_UNSAFE_PATH: 'a bundle holds a symlink, an absolute or `..` path, a reserved or duplicate path; nothing was imported',
  AIRGAP_IMPORT: 'a verified bundle could not be placed into the target directory; a re-run resumes',
  AIRGAP_BACKUP: 'the database backup before an air-gap import failed; nothing was imported',
  AIRGAP_CLUSTER: 'the cluster cannot take an air-gap import now (no patch directory configured, no active app machine, no primary, a copy failed)',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Exit statuses other than 1, one per reason an air-gap bundle is refused, so a script (or the
 * cluster import later) can tell an old stick from a tampered one without parsing text
 * (Foundries' aklite-offline does the same). docs/airgap.md lists them.
 */
export const EXIT_STATUS: Partial<Record<ErrorCode, number>> = {
  AIRGAP_INVALID: 20,
  AIRGAP_UNSIGNED: 21,
  AIRGAP_UNTRUSTED_KEY: 22,
  AIRGAP_BAD_SIGNATURE: 23,
  AIRGAP_TAMPERED: 24,
  AIRGAP_EXPIRED: 25,
  AIRGAP_OLDER: 26,
  AIRGAP_INCOMPLETE: 27,
  AIRGAP_FOREIGN_PART: 28,
  AIRGAP_UNSAFE_PATH: 29,
};

export interface Problem {
  /** Where: "vigil.yaml:12 machines.app1.address" or a machine name. */
  where: string;
  /** What is wrong. */
  message: string;
  /** What to write or run instead. */
  fix: string;
}

export class VigilError extends Error {
  readonly code: ErrorCode;
  readonly problems: Problem[];
  readonly retryable: boolean;

  constructor(code: ErrorCode, problems: Problem[], opts: { cause?: unknown; retryable?: boolean } = {}) {
    super(problems.map(formatProblem).join('\n'), { cause: opts.cause });
    this.name = 'VigilError';
    this.code = code;
    this.problems = problems;
    this.retryable = opts.retryable ?? false;
  }
}

/**
 * Errors that are not VigilErrors (they carry no list of problems: a failed program, a failed
 * HTTPS request, HAProxy's runtime API) but still reach people: they carry a code of the same
 * registry, so the CLI prints it and exits 1 rather than calling them bugs.
 */
export interface CodedError extends Error {
  readonly code: ErrorCode;
}

/** Whether `err` carries a code of the registry (every VigilError, and the coded errors above). */
export function isCodedError(err: unknown): err is CodedError {
  if (!(err instanceof Error)) return false;
  const code: unknown = (err as Error & { code?: unknown }).code;
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

export function formatProblem(p: Problem): string {
  return `${p.where}: ${p.message}\n  fix: ${p.fix}`;
}

export function problem(where: string, message: string, fix: string): Problem {
  return { where, message, fix };
}
