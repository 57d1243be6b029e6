import { createReadStream } from 'node:fs';
import { copyFile, mkdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';

import type { Command } from 'commander';

import { QubesError } from '../../errors.js';
import { confirm } from '../confirm.js';
import { action, type CliContext } from '../context.js';
import type { CliIo } from '../io.js';
import { transferProgress } from '../progress.js';
import { formatTable } from '../table.js';
import { BUILDABLE_TEMPLATES, buildTemplate, builderPath, type BuiltTemplate } from '../template-builder.js';

/** Upstream's qvm-template records where a template came from in these features of the TemplateVM. */
const FEATURE = {
  name: 'template-name',
  epoch: 'template-epoch',
  version: 'template-version',
  release: 'template-release',
  reponame: 'template-reponame',
  buildtime: 'template-buildtime',
  installtime: 'template-installtime',
  summary: 'template-summary',
} as const;

/** What the builder's templates are, for the features above. */
const BUILT_FROM: Readonly<Record<string, { version: string; summary: string }>> = {
  'debian-12': { version: '12', summary: 'Debian 12 (bookworm) built from Debian packages with mmdebstrap' },
};

/** The reponame feature of a template built on this machine rather than downloaded. */
const LOCAL_REPO = '@odyssey-build';

function failure(message: string): QubesError {
  return new QubesError(message, 'QubesException');
}

/** Upstream's date format for the buildtime/installtime features. */
function featureDate(date: Date): string {
  return date.toISOString().replace('T', ' ').slice(0, 19);
}

/** Kernel directory name in the pool: the template's own, beside any other kernel of the same version. */
export function kernelName(template: string, kernelVersion: string): string {
  return `${kernelVersion}-${template}`;
}

/** Copies a file into place under a temporary name first, so a reader never sees half of it. */
async function installFile(from: string, to: string): Promise<void> {
  await copyFile(from, `${to}.tmp`);
  await rename(`${to}.tmp`, to);
}

/**
 * The guest kernel goes into the kernel pool's directory (dom0's own files, as upstream's kernel
 * packages install them: the Admin API has no call that adds a kernel); `default_kernel` is set when
 * none is, else the template is given its own kernel so it never boots another image's initramfs.
 */
async function installKernel(ctx: CliContext, name: string, built: BuiltTemplate): Promise<string> {
  const pool = (await ctx.client.globalProperties.get('default_pool_kernel')).value || 'linux-kernel';
  const dir = (await ctx.client.pools.info(pool))['dir_path'];
  if (!dir) throw failure(`kernel pool ${pool} has no dir_path`);
  const kernel = kernelName(name, built.kernelVersion);
  await mkdir(join(dir, kernel), { recursive: true });
  await installFile(built.vmlinuz, join(dir, kernel, 'vmlinuz'));
  await installFile(built.initramfs, join(dir, kernel, 'initramfs'));
  const current = (await ctx.client.globalProperties.get('default_kernel')).value;
  if (current === '') await ctx.client.globalProperties.set('default_kernel', kernel);
  else if (current !== kernel) await ctx.client.vmProperties(name).set('kernel', kernel);
  return kernel;
}

async function installTemplate(ctx: CliContext, command: Command): Promise<number> {
  const [names] = command.processedArgs as [string[]];
  const opts = command.opts<{ cacheDir?: string; rebuild?: boolean }>();
  const unknown = names.filter((n) => !BUILDABLE_TEMPLATES.includes(n));
  if (unknown.length > 0) {
    throw failure(`Template '${unknown.join("', '")}' not found (known: ${BUILDABLE_TEMPLATES.join(', ')})`);
  }
  for (const name of names) {
    if ((await ctx.listVms()).some((vm) => vm.name === name)) {
      ctx.printError(`Template '${name}' already installed, skipping...`);
      continue;
    }
    const built = await buildTemplate({
      builder: builderPath(ctx.io.env),
      name,
      cacheDir: opts.cacheDir,
      force: opts.rebuild,
      stderr: ctx.io.stderr,
    });
    await ctx.client.vms.create({ name, label: 'black', klass: 'TemplateVM' });
    try {
      const size = (await stat(built.root)).size;
      const bar = transferProgress(ctx.io.stderr, `importing ${name}:root`, size);
      const source = createReadStream(built.root);
      try {
        await ctx.client.volumes.import(name, 'root', source, {
          withSize: true,
          size: BigInt(size),
          onProgress: (sent) => bar.update(sent),
        });
      } catch (err) {
        bar.abort();
        throw err;
      } finally {
        source.destroy();
      }
      bar.finish();
      const origin = BUILT_FROM[name];
      const features: [string, string][] = [
        [FEATURE.name, name],
        [FEATURE.epoch, '0'],
        [FEATURE.version, origin?.version ?? '0'],
        [FEATURE.release, built.key],
        [FEATURE.reponame, LOCAL_REPO],
        [FEATURE.buildtime, featureDate((await stat(built.root)).mtime)],
        [FEATURE.installtime, featureDate(new Date())],
        [FEATURE.summary, origin?.summary ?? name],
        // What upstream's template agent requests after its installation (qubes.PostInstall): its
        // qubes.VMExec, which qvm run then uses for a program and its arguments, and each service
        // it has (qvm run -u root uses qubes.VMRootShell/VMRootExec where announced).
        ['vmexec', '1'],
        ...built.rpcServices.map((service): [string, string] => [`supported-rpc.${service}`, '1']),
      ];
      for (const [feature, value] of features) await ctx.client.features.set(name, feature, value);
      const kernel = await installKernel(ctx, name, built);
      ctx.printLine(`Installed template ${name} (kernel ${kernel})`);
    } catch (err) {
      // A template without its root image is no template: leave no half-installed qube behind.
      await ctx.client.vms.remove(name).catch(() => undefined);
      throw err;
    }
  }
  return 0;
}

/** Installed templates: TemplateVMs carrying upstream's template-name feature. */
async function installed(ctx: CliContext): Promise<string[][]> {
  const rows: string[][] = [];
  for (const vm of await ctx.listVms()) {
    if (vm.klass !== 'TemplateVM') continue;
    const name = await ctx.client.features.find(vm.name, FEATURE.name);
    if (name !== vm.name) continue;
    const get = async (f: string) => (await ctx.client.features.find(vm.name, f)) ?? '';
    const version = `${await get(FEATURE.epoch)}:${await get(FEATURE.version)}-${await get(FEATURE.release)}`;
    rows.push([vm.name, version, await get(FEATURE.reponame)]);
  }
  return rows;
}

async function listTemplates(ctx: CliContext, command: Command): Promise<number> {
  const opts = command.opts<{ installed?: boolean; available?: boolean }>();
  const both = !opts.installed && !opts.available;
  const have = await installed(ctx);
  const available = BUILDABLE_TEMPLATES.filter((n) => !have.some(([name]) => name === n)).map((n) => [
    n,
    `0:${BUILT_FROM[n]?.version ?? '0'}`,
    LOCAL_REPO,
  ]);
  if (ctx.json) {
    const entry = ([name, version, repo]: string[]) => ({ name, version, reponame: repo });
    ctx.printJson({
      ...(both || opts.installed ? { installed: have.map(entry) } : {}),
      ...(both || opts.available ? { available: available.map(entry) } : {}),
    });
    return 0;
  }
  const section = (title: string, rows: string[][]) => {
    if (rows.length === 0) return;
    ctx.printLine(title);
    ctx.print(formatTable([['[name]', '[version]', '[reponame]'], ...rows]));
  };
  if (both || opts.installed) section('Installed Templates', have);
  if (both || opts.available) section('Available Templates', available);
  return 0;
}

async function removeTemplates(ctx: CliContext, command: Command): Promise<number> {
  const [names] = command.processedArgs as [string[]];
  const have = new Set((await installed(ctx)).map(([name]) => name));
  const missing = names.filter((n) => !have.has(n));
  if (missing.length > 0) throw failure(`Template '${missing.join("', '")}' not installed`);
  const users = (await ctx.listVms()).filter((vm) => vm.klass !== 'TemplateVM');
  for (const name of names) {
    const using: string[] = [];
    for (const vm of users) {
      const template = await ctx.client
        .vmProperties(vm.name)
        .get('template')
        .catch(() => undefined);
      if (template?.value === name) using.push(vm.name);
    }
    if (using.length > 0) throw failure(`Template '${name}' is in use by: ${using.join(', ')}`);
  }
  const force = command.opts<{ yes?: boolean }>().yes === true;
  if (
    !force &&
    !(await confirm(ctx, ['This will completely remove the selected template(s)...', ...names]))
  ) {
    ctx.printError('Remove cancelled.');
    return 1;
  }
  for (const name of names) await ctx.client.vms.remove(name);
  return 0;
}

export function registerTemplate(program: Command, io: CliIo): void {
  const template = program
    .command('template')
    .description('install, list and remove templates (like qvm-template; built from Debian packages)');
  template
    .command('install')
    .description(
      'build a template with mmdebstrap (cached by its inputs), create its TemplateVM, import its root ' +
        'volume and install its kernel (needs root)',
    )
    .argument('<template...>')
    .option('--cache-dir <dir>', 'build cache (default /var/cache/odyssey/templates)')
    .option('--rebuild', 'build again even when the cache has this build')
    .action(action(io, installTemplate));
  template
    .command('list', { isDefault: true })
    .alias('ls')
    .description('installed templates and the ones that can be installed')
    .option('--installed', 'only installed templates')
    .option('--available', 'only templates that can be installed')
    .action(action(io, listTemplates));
  template
    .command('remove')
    .alias('uninstall')
    .description('remove templates no qube uses (their kernels stay in the kernel pool)')
    .argument('<template...>')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(action(io, removeTemplates));
}
