/**
 * `vigil airgap ...`: keys, fetch and bundle on the outside machine; verify and the local import
 * inside. The work is in src/airgap, loaded on use. Progress goes to stderr, results to stdout.
 */
import { InvalidArgumentError, type Command } from 'commander';

const toStderr = (line: string) => process.stderr.write(`${line}\n`);

const positiveInt = (v: string): number => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number, 0 or more');
  return n;
};

export function registerAirgap(program: Command): void {
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

  airgap
    .command('import')
    .description('verify a bundle and place its files into a directory on this machine, atomically (the cluster-wide import is not built yet)')
    .argument('<bundle>', 'the bundle directory')
    .requiredOption('--trust <file>', "the cluster's trust file (rewritten if the bundle carries a rotation)")
    .requiredOption('--target <dir>', 'the directory that receives the set (e.g. the application patch directory)')
    .action(async (bundle: string, o: { trust: string; target: string }) => {
      const { readTrust } = await import('../airgap/keys.ts');
      const { importBundle } = await import('../airgap/import.ts');
      const { chain } = await readTrust(o.trust);
      const r = await importBundle({ bundle, target: o.target, trust: chain, trustPath: o.trust, progress: toStderr });
      if (r.resumed) process.stdout.write('finished an interrupted import first\n');
      process.stdout.write(
        r.status === 'already-imported'
          ? `bundle sequence ${r.state.sequence} is already in ${o.target}: nothing to do\n`
          : `imported bundle ${r.state.bundleId} sequence ${r.state.sequence} into ${o.target}\n`,
      );
    });
}
