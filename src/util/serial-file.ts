/**
 * A file replaced whole (written beside it, then renamed over it), one write at a time in the
 * order asked. Two writes at once sharing the temporary file fail (the second rename finds it
 * gone) or can leave the older value as the file's last; the agent's memory (highest epoch, fence)
 * is stored from its cycle and from a fence, which can overlap.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export type SerialWrite = (text: string) => Promise<void>;

export function serialFile(path: string): SerialWrite {
  let last: Promise<void> = Promise.resolve();
  return (text) => {
    const write = last.then(async () => {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(`${path}.tmp`, text);
      await rename(`${path}.tmp`, path);
    });
    last = write.catch(() => undefined); // a failed write (the caller hears of it) does not stop the next
    return write;
  };
}
