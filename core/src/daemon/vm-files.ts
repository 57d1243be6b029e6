import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

import type { VmFiles } from '../lifecycle/ports.js';
import { DEFAULT_FIREWALL } from '../model/firewall.js';
import type { FirewallRule, FirewallState } from '../model/firewall.js';
import type { Vm } from '../model/vm.js';
import { writeFileAtomic } from '../persist/atomic-file.js';
import { parseFirewall, serializeFirewall } from '../persist/firewall-xml.js';

const FIREWALL = 'firewall.xml';
const NOTES = 'notes.txt';

function missing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException).code === 'ENOENT';
}

/** Files kept in each VM's directory, as upstream keeps them: firewall.xml and the notes. */
export class VmDirFiles implements VmFiles {
  /** Never throws: one qube's unreadable file must not keep the daemon from serving the others. */
  async loadFirewall(vm: Vm): Promise<FirewallState> {
    try {
      return { rules: parseFirewall(await readFile(join(vm.dirPath, FIREWALL), 'utf8')) };
    } catch (e) {
      if (missing(e)) return { rules: DEFAULT_FIREWALL };
      // The reason goes out in replies, where a NUL would end the message; it may quote the file.
      return { unloadable: (e instanceof Error ? e.message : String(e)).replace(/[\x00-\x1f\x7f]/g, '?') };
    }
  }

  async saveFirewall(vm: Vm, rules: readonly FirewallRule[]): Promise<void> {
    await mkdir(vm.dirPath, { recursive: true });
    await writeFileAtomic(join(vm.dirPath, FIREWALL), serializeFirewall(rules), 0o664);
  }

  async readNotes(vm: Vm): Promise<string> {
    try {
      return await readFile(join(vm.dirPath, NOTES), 'utf8');
    } catch (e) {
      if (missing(e)) return '';
      throw e;
    }
  }

  async writeNotes(vm: Vm, notes: string): Promise<void> {
    await mkdir(vm.dirPath, { recursive: true });
    await writeFileAtomic(join(vm.dirPath, NOTES), notes, 0o664);
  }

  async removeVmDir(vm: Vm): Promise<void> {
    await rm(vm.dirPath, { recursive: true, force: true });
  }
}
