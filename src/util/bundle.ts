/**
 * One TypeScript entry bundled with its dependencies into a single ES module that plain node runs
 * (no tsx, no node_modules): for programs that start often, where start-up time counts (file
 * sync's receiver, the lab's systemctl). Paths in the output are relative to the checkout, so the
 * same sources give the same bytes wherever the command runs from.
 */
import { chmod, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export async function bundleForNode(entry: string, outfile: string, banner: string): Promise<void> {
  const { build } = await import('esbuild');
  await mkdir(dirname(outfile), { recursive: true });
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'error',
    absWorkingDir: ROOT,
    banner: { js: banner },
  });
  await chmod(outfile, 0o755);
}
