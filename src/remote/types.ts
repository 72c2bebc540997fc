/**
 * A shell on one machine of the cluster, as Vigil's administration commands (doctor, apply) see
 * it: run a program with arguments (never through a shell string), read and write files. Two
 * transports implement it: the lab's namespaces (src/lab/shell.ts) and SSH with pinned host keys
 * (src/remote/ssh.ts). Checks and steps are written once against this interface.
 */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Bytes written to the program's stdin (e.g. a file's content or a secret: never an argument). */
  input?: string | Buffer;
  /** Give up after this long (default 30 s); the result then has code 124. */
  timeoutMs?: number;
}

export interface RemoteShell {
  /** The machine's name in the cluster file. */
  readonly machine: string;
  /** Runs argv[0] with the remaining arguments on the machine, as root. */
  exec(argv: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** A file's content, or null when it does not exist. */
  readFile(path: string): Promise<Buffer | null>;
  /** Writes a file atomically (temporary file, then rename) with the given mode and owner. */
  writeFile(path: string, content: string | Buffer, opts?: { mode?: number; owner?: string }): Promise<void>;
  close(): Promise<void>;
}
