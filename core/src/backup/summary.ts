import type { App } from '../model/app.js';
import type { Vm } from '../model/vm.js';
import type { VmToBackup } from './plan.js';
import { sizeToHuman } from './py-format.js';

/** The three columns of upstream's table and their widths. */
const COLUMNS = [
  { name: 'VM', width: 16 },
  { name: 'type', width: 12 },
  { name: 'size', width: 12 },
] as const;

const rule = (): string => `${COLUMNS.map((c) => `${'-'.repeat(c.width + 2)}+`).join('')}\n`;
const cell = (text: string, width: number): string => `${text.padStart(width + 1)} |`;

function typeOf(vm: Vm): string {
  if (vm.klass === 'TemplateVM') return 'Template VM';
  return vm.props.tryGet('updateable') === true ? 'VM + Sys' : 'VM';
}

/** Backup.get_backup_summary: what admin.backup.Info answers, byte for byte. */
export function backupSummary(app: App, plan: readonly VmToBackup[]): string {
  let out = rule();
  out += `${COLUMNS.map((c) => cell(c.name, c.width)).join('')}\n`;
  out += rule();
  for (const entry of plan) {
    let line =
      cell(entry.vm.name, COLUMNS[0].width) +
      cell(typeOf(entry.vm), COLUMNS[1].width) +
      cell(sizeToHuman(entry.size), COLUMNS[2].width);
    // The backup reads each volume's committed data, never what a running VM is writing.
    if (entry.vm.powerState !== 'Halted') {
      line += ' <-- The VM is running, backup will contain its state from before its start!';
    }
    out += `${line}\n`;
  }
  out += rule();
  const total = plan.reduce((sum, e) => sum + e.size, 0);
  out += cell('Total size:', COLUMNS[0].width);
  out += cell(sizeToHuman(total), COLUMNS[1].width + 1 + 2 + COLUMNS[2].width);
  out += '\n';
  out += rule();
  const chosen = new Set(plan.map((e) => e.vm));
  const notSelected = app.domains
    .list()
    .filter((vm) => !chosen.has(vm))
    .map((vm) => vm.name)
    .sort();
  out += `VMs not selected for backup:\n - ${notSelected.join('\n - ')}\n`;
  return out;
}
