/** Small network helpers shared by the daemons, the lab, tests and benchmarks. */
import { createServer, type AddressInfo } from 'node:net';

/** True when `url` answers 2xx within `timeoutMs`; false on any error or other status. */
export async function httpOk(url: string, timeoutMs = 1000, method = 'GET'): Promise<boolean> {
  try {
    const res = await fetch(url, { method, signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/** A TCP port free right now on `host` (the kernel picks it; it may be taken again before use). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
