import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A scratch directory tree: `write('a/b.policy', text)` creates parents as needed. */
export class TempTree {
  readonly root = mkdtempSync(path.join(tmpdir(), 'odyssey-policy-'));

  path(rel: string): string {
    return path.join(this.root, rel);
  }

  write(rel: string, text: string): string {
    const file = this.path(rel);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text);
    return file;
  }

  mkdir(rel: string): string {
    const dir = this.path(rel);
    mkdirSync(dir, { recursive: true });
    return dir;
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}
