import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * Makes `dir` and any missing parents (like `mkdir -p`), each with `mode` (less the umask).
 * Node's own `mkdir(…, { recursive: true })` loops forever where the kernel answers ENOENT under a
 * parent that exists (`/proc/x`, other pseudo file systems): here every folder is made once, and
 * the first refusal is thrown (ENOENT, EACCES, ENOTDIR, EROFS, ENOSPC…) with `path` the folder asked
 * for and `syscall` mkdir, for the caller to name (file-errors.ts). A folder that already exists is fine; so is one another process made
 * meanwhile.
 *
 * @throws NodeJS.ErrnoException from stat or mkdir
 */
export function makeDirs(dir: string, mode = 0o777): void {
  try {
    makeEach(dir, mode);
  } catch (err) {
    // Said of the folder asked for, as mkdir -p would (file-errors.ts words it from these).
    throw Object.assign(err as NodeJS.ErrnoException, { path: dir, syscall: 'mkdir' });
  }
}

function makeEach(dir: string, mode: number): void {
  const missing: string[] = [];
  for (let p = resolve(dir); ;) {
    try {
      if (statSync(p).isDirectory()) break;
      throw Object.assign(new Error(`ENOTDIR: not a folder, mkdir '${p}'`), {
        code: 'ENOTDIR',
        errno: -20,
        syscall: 'mkdir',
        path: p,
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    missing.push(p);
    const parent = dirname(p);
    if (parent === p) break;
    p = parent;
  }
  for (const p of missing.reverse()) {
    try {
      mkdirSync(p, { mode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}
