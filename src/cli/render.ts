/**
 * `vigil render [-c FILE] [--out DIR]`: every machine's configuration files, written to
 * DIR/<machine>/<path on the machine> with the mode each must have. Nothing half-written: the
 * tree is built aside and renamed into place (render/write.ts). File contents are never printed;
 * some hold passwords.
 */
import type { Command } from 'commander';
import { relative } from 'node:path';

export function registerRender(program: Command): void {
  program
    .command('render')
    .description("write every machine's configuration files (etcd, Patroni, HAProxy, nginx, the app, systemd units) to a directory")
    .option('-c, --config <file>', 'cluster file', 'vigil.yaml')
    .option('--out <dir>', 'output directory, replaced as a whole', 'rendered')
    .option('--patroni-version <version>', 'Patroni version on the db machines (3.2+ has higher timer minimums)')
    .action(async (opts: { config: string; out: string; patroniVersion?: string }) => {
      // Loaded on use, so commands that need none of this start faster.
      const [{ loadCluster, loadSecrets }, { renderAll }, { writeRendered }] = await Promise.all([
        import('../config/load.ts'),
        import('../render/index.ts'),
        import('../render/write.ts'),
      ]);
      const cluster = await loadCluster(opts.config);
      const secrets = await loadSecrets(cluster);
      const files = renderAll(cluster, secrets, { patroniVersion: opts.patroniVersion });
      const written = await writeRendered(files, opts.out);
      for (const { file, dest } of written) {
        const mode = file.mode.toString(8).padStart(4, '0');
        process.stdout.write(`${file.machine.padEnd(12)} ${mode} ${file.owner.padEnd(18)} ${file.path}  ->  ${relative(process.cwd(), dest) || dest}\n`);
      }
      process.stdout.write(`${written.length} files for ${cluster.machines.length} machines in ${opts.out}\n`);
    });
}
