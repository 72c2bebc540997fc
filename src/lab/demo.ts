/** `vigil lab demo`: a user's request end to end: a ticket written through the proxy and read back. */
import { entryAddress, withRole } from '../config/schema.ts';
import { VigilError, problem } from '../util/errors.ts';
import { findPrimary, openLab, type Progress } from './lab.ts';

export async function labDemo(say: Progress): Promise<void> {
  const { cluster } = await openLab();
  const base = `http://${entryAddress(cluster)!}:${cluster.proxy.httpPort}`;
  const title = `Printer on floor 3 is on fire (${new Date().toISOString()})`;
  say(`POST ${base}/api/tickets {"title": "${title}"}`);
  const created = await fetch(`${base}/api/tickets`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title }),
    signal: AbortSignal.timeout(5000),
  });
  const body = (await created.json()) as { id?: string | number; node?: string };
  if (created.status !== 201 || body.id === undefined)
    throw new VigilError('LAB', [
      problem(
        base,
        `creating a ticket answered ${created.status} ${JSON.stringify(body)}`,
        "check `vigil lab status`, and the app machines' journals: `vigil lab exec app1 -- journalctl -u vigil-refapp.service -u vigil-nginx.service -n 50`",
      ),
    ]);
  say(`  -> ${created.status}: ticket ${body.id} stored by ${body.node}`);
  const read = await fetch(`${base}/api/tickets/${body.id}`, { signal: AbortSignal.timeout(5000) });
  const ticket = (await read.json()) as { title?: string };
  if (read.status !== 200 || ticket.title !== title)
    throw new VigilError('LAB', [
      problem(base, `reading ticket ${body.id} back answered ${read.status} ${JSON.stringify(ticket)}`, 'check the application log on the app machines'),
    ]);
  say(`GET ${base}/api/tickets/${body.id}\n  -> ${read.status}: ${JSON.stringify(ticket)}`);
  const primary = await findPrimary(cluster);
  say(`database primary: ${primary?.name ?? 'none'}; HAProxy stats: http://${withRole(cluster, 'proxy')[0]!.address}:${cluster.proxy.statsPort}/`);
}
