/**
 * A client that polls the application through the proxy's :80 and records which machine answered
 * each request: when the service answered, failed, and from where, for tests and benchmarks. It is
 * one sequential client behind `balance first`, so it cannot see two machines serving at once: the
 * witness for that is the checker (checker.ts).
 */
export interface Answer {
  /** performance.now() when the answer arrived. */
  atMs: number;
  /** The machine that answered 200, or null for an error or any other status. */
  node: string | null;
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
      try {
        const res = await fetch(this.url, { signal: AbortSignal.timeout(2000) });
        const body = (await res.json()) as { node?: string };
        if (res.status === 200 && typeof body.node === 'string') node = body.node;
      } catch {
        node = null;
      }
      this.answers.push({ atMs: performance.now(), node });
      await new Promise((r) => setTimeout(r, this.intervalMs));
    }
  }
}
