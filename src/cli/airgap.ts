/**
 * `vigil airgap ...`: keys, fetch and bundle on the outside machine; verify and the local import
 * inside. The work is in src/airgap, loaded on use. Progress goes to stderr, results to stdout.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { Machine } from '../config/schema.ts';
import { labOption, requireLab, type LabTarget } from './checkout.ts';

const toStderr = (line: string) => process.stderr.write(`${line}\n`);

const positiveInt = (v: string): number => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number, 0 or more');
  return n;
};

export function registerAirgap(program: Command, lab?: LabTarget): void {
  const airgap = program.command('airgap').description('carry patches into an isolated network: fetch, bundle and sign outside; verify and import inside');

  const keys = airgap.command('keys').description('the ed25519 signing key and the root of trust the cluster holds');
  keys
    .command('init')
    .description('create a signing key (mode 0600) and the trust file naming it')
    .requiredOption('--key <file>', 'where to write the private key (kept on the outside machine; never printed)')
    .requiredOption('--trust <file>', 'where to write the trust file (public: give it to the cluster)')
    .action(async (o: { key: string; trust: string }) => {
      const id = await (await import('../airgap/keys.ts')).initKeys(o.key, o.trust);
      process.stdout.write(`signing key ${id} written to ${o.key} (mode 0600)\ntrust file written to ${o.trust}: install it on the cluster\n`);
    });
  keys
    .command('rotate')
    .description('create the next signing key; the trust file gets a link signed by the old key and the new one')
    .requiredOption('--key <file>', 'the current private key')
    .requiredOption('--new-key <file>', 'where to write the new private key (mode 0600)')
    .requiredOption('--trust <file>', 'the trust file to extend (rewritten in place)')
    .action(async (o: { key: string; newKey: string; trust: string }) => {
      const r = await (await import('../airgap/keys.ts')).rotateKeys(o.key, o.newKey, o.trust);
      process.stdout.write(
        `trust moved from key ${r.from} to key ${r.to}; ${o.trust} holds the rotation\n` +
          `bundle with --key ${o.newKey} --trust ${o.trust}: the cluster follows the rotation on the next import; then destroy ${o.key}\n`,
      );
    });

  airgap
    .command('fetch')
    .description('download what a sources file lists, verifying published SHA-256s; resumes an interrupted run')
    .requiredOption('--sources <file>', 'one URL a line, with sha256=... and path=... (docs/airgap.md)')
    .requiredOption('--out <dir>', 'the directory to fill')
    .action(async (o: { sources: string; out: string }) => {
      const files = await (await import('../airgap/fetch.ts')).fetchSources({ sourcesPath: o.sources, out: o.out, progress: toStderr });
      for (const f of files) {
        process.stdout.write(
          `${f.outcome.padEnd(10)} ${f.path} ${f.bytes} bytes sha256:${f.sha256}${f.verified ? ' (matches the published checksum)' : ' (no published checksum)'}\n`,
        );
      }
    });

  airgap
    .command('bundle')
    .description('sign every file of DIR into a bundle of parts (manifest, sequence, expiry, ed25519)')
    .argument('<dir>', 'the directory to carry (what fetch filled)')
    .requiredOption('--key <file>', 'the private signing key')
    .requiredOption('--out <bundle>', 'the bundle directory to create')
    .option('--max-part-size <size>', 'largest part, e.g. 650M, 4G (default: one part)')
    .option('--sequence <n>', 'the sequence (default: one above the last used with this key)', positiveInt)
    .option('--expires-in-days <days>', 'how long the bundle may be imported', positiveInt, 30)
    .option('--trust <file>', 'carry this trust file, so a cluster can follow a key rotation')
    .action(async (dir: string, o: { key: string; out: string; maxPartSize?: string; sequence?: number; expiresInDays: number; trust?: string }) => {
      const { parseSize } = await import('../airgap/format.ts');
      const { VigilError, problem } = await import('../util/errors.ts');
      const maxPartBytes = o.maxPartSize === undefined ? undefined : parseSize(o.maxPartSize);
      if (maxPartBytes === null) {
        throw new VigilError('USAGE', [
          problem('--max-part-size', `${JSON.stringify(o.maxPartSize)} is not a size`, 'give bytes or a number with K, M, G: 650M'),
        ]);
      }
      const r = await (
        await import('../airgap/bundle.ts')
      ).createBundle({
        dir,
        keyPath: o.key,
        out: o.out,
        maxPartBytes,
        sequence: o.sequence,
        expiresInDays: o.expiresInDays,
        trustPath: o.trust,
        progress: toStderr,
      });
      const m = r.manifest;
      process.stdout.write(
        `bundle ${m.bundleId} sequence ${m.sequence}: ${m.files.length} files in ${m.parts.length} part(s), signed by key ${r.keyId}, expires ${m.expiresAt}\n` +
          `written to ${r.out}\n`,
      );
    });

  airgap
    .command('verify')
    .description('check a bundle against the trust file; writes nothing; one exit status per refusal (docs/airgap.md)')
    .argument('<bundle>', 'the bundle directory')
    .requiredOption('--trust <file>', "the cluster's trust file")
    .option('--last-sequence <n>', 'the last sequence imported: an older bundle is refused, the same sequence is a no-op', positiveInt)
    .option('--target <dir>', 'judge against the last import into DIR (its sequence, manifest and time) instead')
    .action(async (bundle: string, o: { trust: string; lastSequence?: number; target?: string }) => {
      const { readTrust } = await import('../airgap/keys.ts');
      const { verifyBundle } = await import('../airgap/verify.ts');
      const { readState } = await import('../airgap/import.ts');
      const { chain } = await readTrust(o.trust);
      const state = o.target === undefined ? null : await readState(o.target);
      const last = state
        ? { sequence: state.sequence, manifestSha256: state.manifestSha256, importedAt: state.importedAt }
        : o.lastSequence === undefined
          ? undefined
          : { sequence: o.lastSequence };
      const v = await verifyBundle(bundle, { trust: chain, trustSource: o.trust, last, progress: toStderr });
      const m = v.manifest;
      if (v.status === 'already-imported') {
        process.stdout.write(`bundle sequence ${m.sequence} is the last imported: nothing to do\n`);
        return;
      }
      process.stdout.write(
        `verified: bundle ${m.bundleId} sequence ${m.sequence}, ${m.files.length} files, signed by key ${v.keyId}, expires ${m.expiresAt}\n` +
          (v.newTrust ? `it carries a key rotation: importing it moves the trust to key ${v.keyId}\n` : ''),
      );
    });

  labOption(
    airgap
      .command('import')
      .description(
        'import a bundle into the cluster: verify it, back up the database, copy it to the active app machine and import it there into application.patchDir (file sync carries it to the standbys); with --target, into a directory of this machine',
      )
      .argument('<bundle>', 'the bundle directory')
      .requiredOption('--trust <file>', "the cluster's trust file (rewritten if the bundle carries a rotation)")
      .option('-c, --config <file>', 'cluster file (its pki/ directory holds the admin certificate; SSH trust files beside it)', 'vigil.yaml')
      .option('--target <dir>', 'import into this directory of this machine instead of the cluster (what the cluster import runs on the active machine)')
      .addOption(new Option('--floor <sequence:sha256>', "with --target: the cluster's last import, which outranks the directory's own").hideHelp()),
    lab,
  ).action(async (bundle: string, o: { trust: string; config: string; lab?: boolean; target?: string; floor?: string }) => {
    if (o.target === undefined) return importIntoCluster(bundle, o, lab);
    const { readTrust } = await import('../airgap/keys.ts');
    const { importBundle } = await import('../airgap/import.ts');
    const { chain } = await readTrust(o.trust);
    const floor = o.floor === undefined ? undefined : parseFloor(o.floor);
    const { PARTIAL_DIR } = await import('../sync/protocol.ts');
    const r = await importBundle({ bundle, target: o.target, trust: chain, trustPath: o.trust, floor, skip: [PARTIAL_DIR], progress: toStderr });
    if (r.resumed) process.stdout.write('finished an interrupted import first\n');
    if (r.repaired) process.stdout.write(`${o.target} held the record of this bundle without its whole set: imported it again\n`);
    process.stdout.write(
      r.status === 'already-imported'
        ? `bundle sequence ${r.state.sequence} is already in ${o.target}: nothing to do\n`
        : `imported bundle ${r.state.bundleId} sequence ${r.state.sequence} into ${o.target}\n`,
    );
  });

  labOption(
    airgap
      .command('status')
      .description("which bundle every app machine holds, and whether its patch directory matches the bundle's manifest")
      .option('-c, --config <file>', 'cluster file (its pki/ directory holds the admin certificate)', 'vigil.yaml')
      .option('--json', 'machine-readable output'),
    lab,
  ).action(async (o: { config: string; lab?: boolean; json?: boolean }) => {
    const { withOps } = await import('../ops/context.ts');
    const { clusterStatus } = await import('../ops/status.ts');
    const { formatAirgapStatus } = await import('../ops/airgap-status.ts');
    const s = await withOps(o.lab ? requireLab(lab).ops : { config: o.config }, (ctx) => clusterStatus(ctx, 0));
    if (!s.airgap) {
      const { VigilError, problem } = await import('../util/errors.ts');
      throw new VigilError('AIRGAP_CLUSTER', [
        problem(
          'application.patchDir',
          'is not set in the cluster file',
          "set it to the application's patch directory (one of application.syncDirs) and run `vigil apply`",
        ),
      ]);
    }
    process.stdout.write(`${o.json ? JSON.stringify(s.airgap, null, 2) : formatAirgapStatus(s.airgap)}\n`);
    if (!s.airgap.converged && s.airgap.last) process.exitCode = 3;
  });
}

/** `--floor 7:<sha256>`: the cluster's record as the machine's import takes it. */
function parseFloor(v: string): { sequence: number; manifestSha256: string } {
  const m = /^(\d+):([0-9a-f]{64})$/.exec(v);
  if (!m) throw new InvalidArgumentError('must be SEQUENCE:SHA256');
  return { sequence: Number(m[1]), manifestSha256: m[2]! };
}

/** The cluster import (src/airgap/cluster.ts) with the cluster file's (or the lab's) etcd and machines. */
async function importIntoCluster(bundle: string, o: { trust: string; config: string; lab?: boolean }, lab?: LabTarget): Promise<void> {
  const { openOps } = await import('../ops/context.ts');
  const { importToCluster } = await import('../ops/airgap-import.ts');
  const ctx = await openOps(o.lab ? requireLab(lab).ops : { config: o.config });
  try {
    const openShell = o.lab
      ? (await requireLab(lab).doctor()).openShell
      : await import('../remote/ssh.ts').then(
          ({ openClusterSsh }) =>
            (m: Machine) =>
              openClusterSsh(o.config, m),
        );
    const r = await importToCluster({ cluster: ctx.cluster, store: ctx.store, events: ctx.events, openShell, bundle, trustPath: o.trust, progress: toStderr });
    process.stdout.write(
      r.status === 'already-imported'
        ? `bundle sequence ${r.record.sequence} is the cluster's last import and ${r.node} holds it: nothing to do\n`
        : `imported bundle ${r.record.bundleId} sequence ${r.record.sequence} on ${r.node}; ${r.recorded ? 'recorded in etcd' : `the cluster's record had it already (imported on ${r.record.node})`}${r.backup ? `; database backup ${r.backup.machine}:${r.backup.path}` : ''}\n` +
            'file sync carries it to the standbys: `vigil airgap status` shows when every app machine holds it\n',
    );
  } finally {
    await ctx.close();
  }
}
