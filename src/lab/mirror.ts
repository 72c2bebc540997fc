/**
 * The lab's package mirror: the release's mirror image (rootfs.ts, a flat repository of the
 * packages `vigil apply` installs) served over HTTP on the bridge address, where an on-premise
 * site has its own mirror. Bare machines' apt points at it; nothing in the lab reaches Debian's
 * archive. A plain process of this host, found again by its PID file (never by name).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VigilError, problem } from '../util/errors.ts';
import { sleep, waitFor } from '../util/exec.ts';
import { LAB_DIR } from './paths.ts';
import { BRIDGE_ADDRESS } from './topology.ts';

export const MIRROR_PORT = 3142;
const pidFile = () => join(LAB_DIR, 'mirror.pid');

/** What a bare machine's /etc/apt/sources.list.d/vigil-lab.sources says. */
export function mirrorSources(): string {
  return `# The lab's package mirror (vigil lab up --bare): the packages vigil apply installs.\nTypes: deb\nURIs: http://${BRIDGE_ADDRESS}:${MIRROR_PORT}/\nSuites: ./\nTrusted: yes\n`;
}

/** A static file server: GET and HEAD of the files in one directory, nothing else. */
const SERVER = `
import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { join, normalize } from 'node:path';
const [dir, host, port] = process.argv.slice(1);
createServer((req, res) => {
  const name = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^\\/+/, '');
  let st;
  try { if (name.includes('..') || name.includes('/')) throw 0; st = statSync(join(dir, name)); if (!st.isFile()) throw 0; }
  catch { res.writeHead(404).end(); return; }
  res.writeHead(200, { 'content-length': st.size });
  if (req.method === 'HEAD') { res.end(); return; }
  createReadStream(join(dir, name)).pipe(res);
}).listen(Number(port), host);
`;

export async function startMirror(dir: string): Promise<number> {
  const log = openSync(join(LAB_DIR, 'mirror.log'), 'a');
  try {
    const child = spawn(process.execPath, ['--input-type=module', '-e', SERVER, dir, BRIDGE_ADDRESS, String(MIRROR_PORT)], {
      detached: true,
      stdio: ['ignore', log, log],
    });
    child.unref();
    if (child.pid === undefined) throw new VigilError('LAB', [problem('the lab mirror', 'did not start', `read ${join(LAB_DIR, 'mirror.log')}`)]);
    await writeFile(pidFile(), String(child.pid));
    await waitFor(
      'the lab mirror',
      async () =>
        (await fetch(`http://${BRIDGE_ADDRESS}:${MIRROR_PORT}/Packages.gz`, { method: 'HEAD', signal: AbortSignal.timeout(1000) }).then(
          (r) => r.ok,
          () => false,
        ))
          ? true
          : undefined,
      10_000,
      100,
    );
    return child.pid;
  } finally {
    closeSync(log);
  }
}

/** Stops the mirror this lab started (its PID file, and only if that PID still runs the mirror). */
export async function stopMirror(): Promise<void> {
  const pid = Number(await readFile(pidFile(), 'utf8').catch(() => ''));
  if (Number.isInteger(pid) && pid > 0) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(String(MIRROR_PORT)) && cmdline.includes('createServer')) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
      await sleep(50);
    }
  }
  await rm(pidFile(), { force: true });
}
