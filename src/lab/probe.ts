/**
 * A client that polls the application through the proxy's :80 and records which machine answered
 * each request: when the service answered, failed, and from where, for tests and benchmarks. It is
 * one sequential client behind `balance first`, so it cannot see two machines serving at once: the
 * witness for that is the checker (checker.ts).
 */
export interface Answer {
  /** performance.now() when the answer arrived. */
  atMs: number;
  /** Date.now() when the answer arrived, to find it in the machines' journals. */
  wallMs: number;
  /** The machine that answered 200, or null for an error or any other status. */
  node: string | null;
  /** Why a request failed: the status and the body's `error`, or the client's error. */
  why?: string;
}

/** Failed answers as lines a failure message can carry: wall-clock time and why (at most `max`). */
export function describeFailures(answers: Answer[], max = 10): string {
  const failed = answers.filter((a) => a.node === null);
  const lines = failed.slice(0, max).map((a) => `${new Date(a.wallMs).toISOString()} ${a.why ?? 'failed'}`);
  if (failed.length > max) lines.push(`… and ${failed.length - max} more`);
  return lines.join('; ');
}

export class HttpProbe {
  readonly answers: Answer[] = [];
  private stopped = false;
  private loop?: Promise<void>;

  constructor(
    private readonly url: string,
    private readonly intervalMs = 50,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** The node that answered last, if the last answer was a success. */
  current(): string | null {
    return this.answers.at(-1)?.node ?? null;
  }

  /** The first successful answer after `sinceMs` from a machine other than `notNode`. */
  firstOtherAfter(sinceMs: number, notNode: string): Answer | undefined {
    return this.answers.find((a) => a.atMs > sinceMs && a.node !== null && a.node !== notNode);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let node: string | null = null;
      let why: string | undefined;
      try {
        const res = await fetch(this.url, { signal: AbortSignal.timeout(2000) });
        const text = await res.text();
        let body: { node?: unknown; error?: unknown } = {};
        try {
          body = JSON.parse(text) as typeof body;
        } catch {
          why = `HTTP ${res.status}, not JSON: ${text.slice(0, 80)}`;
        }
        if (res.status === 200 && typeof body.node === 'string') node = body.node;
        else why ??= `HTTP ${res.status}${typeof body.node === 'string' ? ` from ${body.node}` : ''}${typeof body.error === 'string' ? `: ${body.error}` : ''}`;
      } catch (err) {
        const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
        why = `${err instanceof Error ? err.message : String(err)}${cause}`;
      }
      this.answers.push({ atMs: performance.now(), wallMs: Date.now(), node, ...(why === undefined ? {} : { why }) });
      await new Promise((r) => setTimeout(r, this.intervalMs));
    }
  }
}
