/**
 * Attachment files on disk: `<attachments.dir>/<ticketId>/<name>`. Uploads are streamed to a
 * hidden temp file in the same directory, flushed, then renamed over the final name, so a crash
 * (or a client that hangs up) never leaves a half-written attachment under a real name; file sync
 * should exclude the `.upload-*.part` temp names.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, type ReadStream } from 'node:fs';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { HttpError } from './http.ts';

/** Longest name in UTF-8 bytes; leaves room under the usual 255-byte file name limit. */
export const MAX_NAME_BYTES = 200;

// Letters and digits of any script, plus a few punctuation marks; first character not a dot,
// so a name can neither be `.`/`..` nor collide with the hidden temp files.
const NAME_RE = /^[\p{L}\p{N}_][\p{L}\p{N}\p{M} ._()+,=@-]*$/u;

/**
 * Decodes and checks an attachment name taken from the URL. Returns the name or throws a 400
 * that says what is wrong: the name ends up in a file path, so anything unusual is refused.
 */
export function checkAttachmentName(encoded: string): string {
  let name: string;
  try {
    name = decodeURIComponent(encoded);
  } catch {
    throw new HttpError(400, 'attachment name is not valid percent-encoding');
  }
  if (name.includes('/') || name.includes('\\')) throw new HttpError(400, 'attachment name must not contain a slash or backslash');
  if (name.includes('..')) throw new HttpError(400, 'attachment name must not contain ".."');
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) throw new HttpError(400, `attachment name is longer than ${MAX_NAME_BYTES} bytes`);
  if (!NAME_RE.test(name) || name.endsWith(' ')) {
    throw new HttpError(400, 'attachment name may hold letters, digits, spaces and . _ ( ) + , = @ - only, and must not start with a dot or end with a space');
  }
  return name;
}

export interface StoredFile {
  size: number;
  sha256: string;
}

/** Streams `body` into the attachment file; the final name appears only once it is complete. */
export async function storeAttachment(dir: string, ticketId: number, name: string, body: Readable, maxBytes: number): Promise<StoredFile> {
  const ticketDir = join(dir, String(ticketId));
  await mkdir(ticketDir, { recursive: true, mode: 0o750 });
  const tmp = join(ticketDir, `.upload-${randomBytes(8).toString('hex')}.part`);
  const hash = createHash('sha256');
  let size = 0;
  // flush: fsync before close, and the directory after the rename, so a power cut leaves
  // either the old file or the complete new one under the name.
  const out = createWriteStream(tmp, { flags: 'wx', mode: 0o640, flush: true });
  try {
    await pipeline(
      body,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          size += chunk.length;
          if (size > maxBytes) throw new HttpError(413, `attachment over ${maxBytes} bytes`, { connection: 'close' });
          hash.update(chunk);
          yield chunk;
        }
      },
      out,
    );
    await rename(tmp, join(ticketDir, name));
    await syncDir(ticketDir);
  } catch (err) {
    // The stream opens its file asynchronously: an error can come before the file exists, and
    // an unlink then would run before the open creates it. Wait until the stream has closed.
    if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  return { size, sha256: hash.digest('hex') };
}

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** Opens an attachment for reading; null when the file is not on this node's disk. */
export async function openAttachment(dir: string, ticketId: number, name: string): Promise<{ stream: ReadStream; size: number } | null> {
  const fh = await open(join(dir, String(ticketId), name), 'r').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (!fh) return null;
  // The size comes from the open file, not the database row, so Content-Length always matches
  // the bytes sent even if a later upload replaced the file.
  const { size } = await fh.stat().catch(async (err: unknown) => {
    await fh.close();
    throw err;
  });
  return { stream: fh.createReadStream(), size };
}
