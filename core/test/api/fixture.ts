import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { TestDaemon } from '../support/harness.js';
import { startDaemon } from '../support/harness.js';

/**
 * The state of admin-api-reference Appendix A: dom0, TemplateVM debian-12,
 * AppVMs sys-net (provides network), work, newvm, dvm1 (disposable template),
 * kernel 6.6.1 installed and default.
 */
export async function appendixA(): Promise<TestDaemon> {
  const d = await startDaemon();
  const kdir = join(d.stateDir, 'vm-kernels', '6.6.1');
  await mkdir(kdir, { recursive: true });
  await writeFile(join(kdir, 'vmlinuz'), 'kernel');
  await d.ok('admin.property.Set', 'dom0', 'default_kernel', '6.6.1');
  await d.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=debian-12 label=black');
  await d.ok('admin.property.Set', 'dom0', 'default_template', 'debian-12');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=sys-net label=red');
  await d.ok('admin.vm.property.Set', 'sys-net', 'netvm', '');
  await d.ok('admin.vm.property.Set', 'sys-net', 'provides_network', 'True');
  await d.ok('admin.property.Set', 'dom0', 'default_netvm', 'sys-net');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=work label=blue');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=newvm label=red');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'debian-12', 'name=dvm1 label=red');
  await d.ok('admin.vm.property.Set', 'dvm1', 'template_for_dispvms', 'True');
  return d;
}
