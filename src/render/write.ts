/**
 * Writing rendered files to a local directory tree OUT/<machine>/<path>, all or nothing: the
 * tree is built in a temp directory next to OUT and renamed into place, so OUT is either the
 * previous complete render or the new one, never a mix.
 */
import { mkdir, mkdtemp, readdir, rename, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize, resolve } from 'node:path';
import { VigilError, problem } from '../util/errors.ts';
import type { RenderedFile } from './file.ts';

/** Marks a directory as a render output that may be replaced as a whole. */
export const RENDER_MARKER = '.vigil-rendered';

export interface WrittenFile {
  file: RenderedFile;
  /** Where it was written locally. */
  dest: string;
}

async function checkReplaceable(out: string): Promise<void> {
  let entries: string[];
  try {
    if (!(await stat(out)).isDirectory()) {
      throw new VigilError('USAGE', [problem(out, 'the output path exists and is not a directory', 'choose another --out directory')]);
    }
    entries = await readdir(out);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  // Never replace a directory that is not ours: --out /etc would otherwise be deleted.
  if (entries.length > 0 && !entries.includes(RENDER_MARKER)) {
    throw new VigilError('USAGE', [
      problem(out, 'the output directory is not empty and was not written by `vigil render`', 'choose an empty or new --out directory'),
    ]);
  }
}

/** Writes `files` under `outDir` with their modes; replaces a previous render atomically. */
export async function writeRendered(files: RenderedFile[], outDir: string): Promise<WrittenFile[]> {
  const out = resolve(outDir);
  await checkReplaceable(out);
  await mkdir(dirname(out), { recursive: true });
  // 0700 (mkdtemp): the tree holds files with passwords until it is renamed into place.
  const tmp = await mkdtemp(join(dirname(out), `.${basename(out)}.tmp-`));
  const written: WrittenFile[] = [];
  const seen = new Set<string>();
  try {
    for (const file of files) {
      if (!isAbsolute(file.path) || normalize(file.path) !== file.path || !/^[a-z][a-z0-9-]*$/.test(file.machine)) {
        throw new VigilError('RENDER', [
          problem(`${file.machine}:${file.path}`, 'not a machine name and absolute path', 'report this as a bug in the renderer'),
        ]);
      }
      const rel = join(file.machine, file.path);
      if (seen.has(rel)) throw new VigilError('RENDER', [problem(`${file.machine}:${file.path}`, 'rendered twice', 'report this as a bug in the renderer')]);
      seen.add(rel);
      const dest = join(tmp, rel);
      await mkdir(dirname(dest), { recursive: true });
      await writeFile(dest, file.content, { mode: file.mode, flag: 'wx' });
      await chmod(dest, file.mode); // the umask may have removed bits
      written.push({ file, dest: join(out, rel) });
    }
    await writeFile(join(tmp, RENDER_MARKER), 'Written by `vigil render`; the whole directory is replaced on the next render.\n');
    const old = `${tmp}.old`;
    let moved = false;
    try {
      await rename(out, old);
      moved = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    try {
      await rename(tmp, out);
    } catch (err) {
      if (moved) await rename(old, out); // put the previous render back
      throw err;
    }
    if (moved) await rm(old, { recursive: true, force: true });
    return written;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
