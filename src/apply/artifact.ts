/**
 * The artifact `vigil apply` installs on every machine: Vigil's own code under /opt/vigil
 * (VIGIL_INSTALL), self-contained because the targets have no npm registry, no internet and no
 * usable Node.js. It holds:
 * - bin/node: the Node.js binary the admin's `vigil` runs on (process.execPath), referenced where
 *   it is and copied as it is. On the reference machine (Debian 12, x86-64, Node 20.20) `ldd` shows
 *   it needs glibc >= 2.28 (libc, libm, libdl, libpthread, ld-linux) plus the GCC runtime that
 *   every Debian, Ubuntu and RHEL system has (libstdc++.so.6 with GLIBCXX_3.4.21, libgcc_s.so.1);
 *   OpenSSL, ICU, libuv and V8 are built in. So it runs on any Linux of the same architecture
 *   (`arch`, in `uname -m` spelling, for apply to compare with the target's).
 * - lib/vigil.mjs: the CLI, agent and observer (src/cli/main.ts) and every dependency in one ES
 *   module (esbuild), run as `node /opt/vigil/lib/vigil.mjs <command> ...` (artifact-entry.ts,
 *   like bin/vigil.js without a checkout's extras). No module of the lab, the reference
 *   application or the test support may be among its inputs (FORBIDDEN): the build fails.
 * - lib/vigil-sync-receive.mjs: file sync's receiver (src/sync/receive-entry.ts).
 * - lib/vigil-refapp.mjs: the reference application (src/refapp/entry.ts), the one file of the
 *   `refapp` set, which apply installs only on the app machines that run vigil-refapp.service.
 * - proto/: the .proto files etcd3 and grpc-js read at run time (DATA_DIRS).
 * - manifest.json: version, arch, and every other file's target, mode, size, SHA-256 and set, so
 *   a machine says what it has.
 *
 * The same sources give the same bytes (apply compares checksums): the bundles name their
 * inputs relative to the checkout (absWorkingDir), never by the directory `vigil` runs from, and
 * nothing time- or machine-dependent is written. Building needs a checkout with node_modules
 * (esbuild is loaded on use), so it runs on the admin's machine, never on a target.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { isBuiltin } from 'node:module';
import { dirname, join, posix, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BuildOptions, Metafile, Plugin } from 'esbuild';
import { VIGIL_INSTALL } from '../layout/units.ts';
import { VigilError, problem } from '../util/errors.ts';

/**
 * Which machines get a file: `vigil`, every machine that runs a Vigil daemon; `refapp`, only the
 * app machines that run the reference application (src/apply/desired.ts).
 */
export type ArtifactSet = 'vigil' | 'refapp';

export interface ArtifactFile {
  /** Absolute path on the target machine, under VIGIL_INSTALL.dir. */
  target: string;
  set: ArtifactSet;
  /** Where the file is on this machine (in the build directory, or process.execPath). */
  source: string;
  mode: number;
  size: number;
  sha256: string;
}

export interface Artifact {
  /** package.json's version plus a digest of every file: `0.1.0+3f2a9c81d0e4`. */
  version: string;
  /** `uname -m` spelling: x86_64 or aarch64. */
  arch: string;
  /** Sorted by target. */
  files: ArtifactFile[];
  /** What each bundle was built from: its target and its inputs (esbuild's metafile), sorted. */
  bundles: { target: string; inputs: string[] }[];
}

export const MANIFEST_TARGET = `${VIGIL_INSTALL.dir}/manifest.json`;

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const CLI_ENTRY = fileURLToPath(new URL('../cli/artifact-entry.ts', import.meta.url));
const RECEIVER_ENTRY = fileURLToPath(new URL('../sync/receive-entry.ts', import.meta.url));
const REFAPP_ENTRY = fileURLToPath(new URL('../refapp/entry.ts', import.meta.url));

/**
 * Folders of the checkout a bundle must not draw from: the lab and the test support run from a
 * checkout only, and the reference application has its own bundle, installed where it runs.
 * Checked on every build against esbuild's list of inputs.
 */
const FORBIDDEN: Record<string, RegExp> = {
  [VIGIL_INSTALL.entry]: /^src\/(lab|testing|refapp)\//,
  [VIGIL_INSTALL.receiver]: /^src\/(lab|testing|refapp)\//,
  [VIGIL_INSTALL.refapp]: /^src\/(lab|testing)\//,
};

/** process.arch -> `uname -m`. */
const UNAME_ARCH: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64' };

/**
 * Bundled CommonJS code expects `require`, `__dirname` and `__filename`, which an ES module lacks:
 * every `require()` of a node built-in (esbuild's `__require`), protobufjs's `require("fs")` (in a
 * try/catch: without it .proto files silently fail to load), ssh2's Emscripten Poly1305. They are
 * defined from the bundle's own location, so a relocated artifact works as well as /opt/vigil.
 * esbuild never gives its own top-level names these three, since the bundled code uses them free.
 */
const NODE_GLOBALS = [
  "import { createRequire as __vigilCreateRequire } from 'node:module';",
  "import { dirname as __vigilDirname } from 'node:path';",
  "import { fileURLToPath as __vigilFileURLToPath } from 'node:url';",
  'const require = __vigilCreateRequire(import.meta.url);',
  'const __filename = __vigilFileURLToPath(import.meta.url);',
  'const __dirname = __vigilDirname(__filename);',
];
const CLI_BANNER = ['// vigil: the Vigil CLI bundle, generated by src/apply/artifact.ts; do not edit.', ...NODE_GLOBALS].join('\n');
/** pg (CommonJS) needs the same definitions as the CLI. */
const REFAPP_BANNER = ['// vigil-refapp: the reference application, generated by src/apply/artifact.ts; do not edit.', ...NODE_GLOBALS].join('\n');
const RECEIVER_BANNER = '// vigil-sync-receive: generated by src/apply/artifact.ts; do not edit.';

/**
 * Data files bundled modules read at run time by a path built on their own `__dirname`. The
 * plugin rewrites `${__dirname}/<dir>` in `module` to `${__dirname}/../<target>` (the banner's
 * __dirname is lib/, so that is <artifact>/<target>) and ships <dir> there. The build fails if
 * the text is gone or the module uses __dirname some other way (a dependency changed).
 */
const DATA_DIRS: { module: string; dir: string; target: string; why: string }[] = [
  {
    module: 'etcd3/lib/connection-pool.js',
    dir: '../proto',
    target: 'proto/etcd3',
    why: 'the etcd v3 API (rpc.proto and the kv.proto, auth.proto it imports), parsed when etcd3 loads',
  },
  {
    module: '@grpc/grpc-js/build/src/channelz.js',
    dir: '../../proto',
    target: 'proto/grpc-js',
    why: "grpc-js's channelz admin service (gRPC servers only): shipped so no code path lacks its file",
  },
  { module: '@grpc/grpc-js/build/src/orca.js', dir: '../../proto', target: 'proto/grpc-js', why: 'ORCA load reports (xDS load balancing only): likewise' },
];

/**
 * Bundled modules that name __dirname, __filename or import.meta.url without reading a file
 * of the checkout on a target; reviewed one by one. Any other such module fails the build.
 */
const REVIEWED: Record<string, string> = {
  'commander/lib/command.js': 'in comments only',
  'ssh2/lib/protocol/crypto/poly1305.js': 'Emscripten output finding its directory (banner); its WebAssembly is inline, a data: URL',
  'ssh2/lib/agent.js': 'pagent.exe, for Pageant on Windows only',
  'src/apply/artifact.ts': 'this file: builds the artifact from a checkout only',
};
const FILE_RELATIVE = /\b__dirname\b|\b__filename\b|import\.meta\.(url|dirname|filename)\b/;

/**
 * Optional native modules, each loaded inside a try/catch that falls back to JavaScript: ssh2's
 * sshcrypto.node (AES-GCM, ChaCha20-Poly1305: node's crypto does them too) and cpu-features
 * (only orders ssh2's cipher list), pg's pg-native (never used: Vigil uses pg's JavaScript
 * client). They are not shipped (they would tie the artifact to this machine's build of them):
 * they resolve to a module that throws "not found", as when they are not installed, so nothing
 * is ever looked up on the target's disk.
 */
const ABSENT = /^(cpu-features|pg-native)$|\.node$/;

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The path of a bundled input from the checkout: `etcd3/lib/x.js` for node_modules, else `src/...`. */
function moduleId(input: string): string {
  const i = input.lastIndexOf('node_modules/');
  return i < 0 ? input : input.slice(i + 'node_modules/'.length);
}

/** Stubs ABSENT modules; rewrites DATA_DIRS paths and records which directories to ship where. */
function artifactPlugin(ship: Map<string, string>): Plugin {
  const dataFilter = new RegExp(`[\\\\/]node_modules[\\\\/](${DATA_DIRS.map((d) => escapeRe(d.module).replaceAll('/', '[\\\\/]')).join('|')})$`);
  return {
    name: 'vigil-artifact',
    setup(b) {
      b.onResolve({ filter: ABSENT }, (a) => ({ path: a.path, namespace: 'vigil-absent' }));
      b.onLoad({ filter: /.*/, namespace: 'vigil-absent' }, (a) => ({
        contents: `throw Object.assign(new Error(${JSON.stringify(`Cannot find module '${a.path}' (not part of the Vigil artifact)`)}), { code: 'MODULE_NOT_FOUND' });`,
        loader: 'js',
      }));
      b.onLoad({ filter: dataFilter }, async (a) => {
        const entry = DATA_DIRS.find((d) => moduleId(a.path.split(sep).join('/')) === d.module)!;
        const text = await readFile(a.path, 'utf8');
        const from = '${__dirname}/' + entry.dir;
        const uses = text.split(from).length - 1;
        if (uses === 0 || uses !== (text.match(/\b__dirname\b/g) ?? []).length)
          throw new Error(`${entry.module} no longer reads ${from}/... as artifact.ts expects (${entry.why}): review DATA_DIRS`);
        ship.set(resolve(dirname(a.path), entry.dir), entry.target);
        return { contents: text.replaceAll(from, '${__dirname}/../' + entry.target), loader: 'js' };
      });
    },
  };
}

/**
 * Fails on what would break on a target: a module locating files by its own path that is neither
 * rewritten nor reviewed, or an import left to the target's disk (anything but a node built-in,
 * and esbuild, imported on use by code that runs on the admin's machine only).
 */
async function checkBundle(target: string, meta: Metafile): Promise<void> {
  const problems: string[] = [];
  for (const input of Object.keys(meta.inputs))
    if (FORBIDDEN[target]!.test(input))
      problems.push(`${input} is in ${target}: the lab, the test support and the reference application stay out of Vigil's bundles (src/cli/checkout.ts)`);
  // A plugin's stubs are named namespace:path; the rest are files of the checkout.
  const inputs = Object.keys(meta.inputs).filter((i) => !i.includes(':') && !DATA_DIRS.some((d) => d.module === moduleId(i)) && !(moduleId(i) in REVIEWED));
  for (let i = 0; i < inputs.length; i += 64) {
    const batch = inputs.slice(i, i + 64); // read in parallel, a few file descriptors at a time
    const texts = await Promise.all(batch.map((input) => readFile(join(ROOT, input), 'utf8')));
    batch.forEach(
      (input, j) => FILE_RELATIVE.test(texts[j]!) && problems.push(`${input} locates files by its own path: ship them (DATA_DIRS) or review it (REVIEWED)`),
    );
  }
  for (const out of Object.values(meta.outputs))
    for (const imp of out.imports)
      if (imp.external && !isBuiltin(imp.path) && !(imp.path === 'esbuild' && imp.kind === 'dynamic-import'))
        problems.push(`${imp.kind} of '${imp.path}' is left to the target's disk`);
  if (problems.length > 0) throw new Error(`the artifact's bundle is not fit for the machines:\n${problems.join('\n')}`);
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function describe(target: string, source: string, mode: number): Promise<ArtifactFile> {
  const set: ArtifactSet = target === VIGIL_INSTALL.refapp ? 'refapp' : 'vigil';
  return { target, set, source, mode, size: (await stat(source)).size, sha256: await sha256(source) };
}

/** What a build writes at the top of its directory: all of it is replaced by the next build. */
const OUTPUTS = ['lib', 'proto', 'manifest.json'];

/** Empties `out`, refusing a directory holding anything a build did not write. */
async function prepare(out: string): Promise<void> {
  const entries = await readdir(out).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  const foreign = entries.filter((e) => !OUTPUTS.includes(e));
  if (foreign.length > 0) throw new Error(`${out} holds ${foreign.join(', ')}, which the artifact did not write: build into an empty directory`);
  for (const e of entries) await rm(join(out, e), { recursive: true, force: true });
  await mkdir(out, { recursive: true });
}

/** Copies the regular files under `from` to `to`, keeping their relative paths. */
async function copyTree(from: string, to: string): Promise<void> {
  for (const e of await readdir(from, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const src = join(e.parentPath, e.name);
    const dest = join(to, relative(from, src));
    await mkdir(dirname(dest), { recursive: true });
    await copyFile(src, dest);
  }
}

/**
 * The artifact's architecture in `uname -m` spelling, from the admin's Node.js (`process.arch`):
 * the artifact carries that very binary. Another architecture is the admin's to change, an APPLY
 * error with its fix, not a bug.
 */
export function artifactArch(nodeArch: string): string {
  const arch = UNAME_ARCH[nodeArch];
  if (arch) return arch;
  throw new VigilError('APPLY', [
    problem(
      `this machine (Node.js for ${nodeArch})`,
      'the artifact carries the Node.js `vigil` runs on, and Vigil ships for x86-64 and arm64 Linux machines only',
      'run `vigil apply` from an x86-64 or arm64 Linux machine (the targets must have the same architecture)',
    ),
  ]);
}

/** Builds the artifact into `dir` (bundles; the node binary is referenced where it is, not copied). */
export async function buildArtifact(dir: string): Promise<Artifact> {
  const arch = artifactArch(process.arch);
  const out = resolve(dir);
  await prepare(out);
  const { build } = await import('esbuild');
  const inArtifact = (target: string) => join(out, posix.relative(VIGIL_INSTALL.dir, target));
  const common: BuildOptions = { absWorkingDir: ROOT, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'silent', metafile: true };
  const ship = new Map<string, string>();
  // Hashing the 100 MB node binary takes about as long as bundling: do both at once.
  const node = describe(VIGIL_INSTALL.node, process.execPath, 0o755);
  node.catch(() => undefined); // awaited below; this only keeps an early failure from going unhandled
  const targets = [VIGIL_INSTALL.entry, VIGIL_INSTALL.receiver, VIGIL_INSTALL.refapp];
  const results = await Promise.all([
    build({
      ...common,
      entryPoints: [CLI_ENTRY],
      outfile: inArtifact(VIGIL_INSTALL.entry),
      external: ['esbuild'],
      plugins: [artifactPlugin(ship)],
      banner: { js: CLI_BANNER },
    }),
    // As bundleReceiver (src/sync/bundle.ts) builds it, plus absWorkingDir: without it the
    // bundle's comments name its inputs relative to the current directory, so its bytes would
    // depend on where `vigil apply` was started.
    build({ ...common, entryPoints: [RECEIVER_ENTRY], outfile: inArtifact(VIGIL_INSTALL.receiver), banner: { js: RECEIVER_BANNER } }),
    build({
      ...common,
      entryPoints: [REFAPP_ENTRY],
      outfile: inArtifact(VIGIL_INSTALL.refapp),
      plugins: [artifactPlugin(ship)],
      banner: { js: REFAPP_BANNER },
    }),
  ]);
  const bundles: Artifact['bundles'] = [];
  for (const [i, r] of results.entries()) {
    const target = targets[i]!;
    if (r.warnings.length > 0)
      throw new Error(
        `esbuild warned while building the artifact:\n${r.warnings.map((w) => `${w.location?.file ?? ''}:${w.location?.line ?? ''} ${w.text}`).join('\n')}`,
      );
    await checkBundle(target, r.metafile!);
    bundles.push({ target, inputs: Object.keys(r.metafile!.inputs).sort() });
  }
  for (const [from, to] of ship) await copyTree(from, join(out, to));

  const files: ArtifactFile[] = [await node];
  for (const e of await readdir(out, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const source = join(e.parentPath, e.name);
    files.push(await describe(posix.join(VIGIL_INSTALL.dir, relative(out, source).split(sep).join('/')), source, 0o644));
  }
  files.sort((a, b) => (a.target < b.target ? -1 : a.target > b.target ? 1 : 0));

  // The version names the content: the same files (and modes) give the same version.
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const digest = createHash('sha256')
    .update(files.map((f) => `${f.target} ${f.mode.toString(8)} ${f.sha256}\n`).join(''))
    .digest('hex');
  const version = `${pkg.version}+${digest.slice(0, 12)}`;
  const manifest = {
    version,
    arch,
    files: files.map((f) => ({ target: f.target, mode: f.mode.toString(8).padStart(4, '0'), size: f.size, sha256: f.sha256, set: f.set })),
  };
  const manifestFile = inArtifact(MANIFEST_TARGET);
  await writeFile(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
  files.push(await describe(MANIFEST_TARGET, manifestFile, 0o644));
  files.sort((a, b) => (a.target < b.target ? -1 : a.target > b.target ? 1 : 0));
  return { version, arch, files, bundles };
}

/** `npx tsx src/apply/artifact.ts --out DIR` (`npm run artifact -- --out DIR`): builds, lists the files, sizes and build time. */
async function cli(args: string[]): Promise<number> {
  const dir = args[0] === '--out' && args.length === 2 ? args[1] : undefined;
  if (!dir) {
    process.stderr.write('usage: tsx src/apply/artifact.ts --out DIR\n');
    return 2;
  }
  const started = performance.now();
  const a = await buildArtifact(dir);
  const ms = performance.now() - started;
  for (const f of a.files) process.stdout.write(`${f.mode.toString(8).padStart(4, '0')} ${String(f.size).padStart(10)} ${f.sha256.slice(0, 12)} ${f.target}\n`);
  const total = a.files.reduce((n, f) => n + f.size, 0);
  const mib = (n: number) => (n / 2 ** 20).toFixed(1);
  process.stdout.write(
    `vigil ${a.version} ${a.arch}: ${a.files.length} files, ${mib(total)} MiB (${mib(total - a.files.find((f) => f.target === VIGIL_INSTALL.node)!.size)} MiB without node) in ${resolve(dir)}; built in ${(ms / 1000).toFixed(2)} s\n`,
  );
  return 0;
}

// Run as a script only: checked by name, not by import.meta.url, which in the CLI bundle is the
// bundle's own URL and would match `process.argv[1]` there.
if (process.argv[1]?.endsWith(`${sep}apply${sep}artifact.ts`)) void cli(process.argv.slice(2)).then((code) => (process.exitCode = code));
