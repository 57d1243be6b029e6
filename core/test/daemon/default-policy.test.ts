/**
 * The package's default policy for the services dom0 serves to qubes
 * (packaging/policy.d/90-default.policy, installed as
 * /etc/qubes/policy.d/90-default.policy beside the generated admin policy):
 * it loads with our parser, `odyssey-policy eval` lets a qube call
 * qubes.FeaturesRequest on dom0, and it allows only services the misc
 * socket serves (to dom0) and the template's agent serves (to a new
 * disposable, as upstream's default).
 */
import 'reflect-metadata';

import { copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPolicy, policyCliMain } from '@odyssey/qrexec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeAdminPolicy } from '../../src/api/admin-policy.js';
import { featuresRequestMethods } from '../../src/api/methods/features-request.js';
import { notifyUpdatesMethods } from '../../src/api/methods/notify-updates.js';
import { METHODS } from '../../src/api/method-table.js';

const PACKAGED = fileURLToPath(new URL('../../../packaging/policy.d/90-default.policy', import.meta.url));

/** What the template's agent serves (templates/debian-12/rootfs/etc/qubes-rpc), in a disposable. */
const TEMPLATE_RPC = fileURLToPath(
  new URL('../../../templates/debian-12/rootfs/etc/qubes-rpc', import.meta.url),
);

/** The services of the misc socket, as the daemon builds them. */
const MISC_SERVICES = [
  ...featuresRequestMethods(() => undefined),
  ...notifyUpdatesMethods({ now: () => 0 }),
].map((m) => m.name);

let dir: string;
let policyDir: string;
let systemInfo: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-default-policy-'));
  // /etc/qubes/policy.d as the package installs it.
  policyDir = join(dir, 'policy.d');
  await writeAdminPolicy(policyDir, METHODS, { overwriteIncludes: false });
  await copyFile(PACKAGED, join(policyDir, '90-default.policy'));
  const domain = (type: string, uuid: string, more: object = {}) => ({
    tags: [],
    type,
    power_state: 'Running',
    uuid,
    template_for_dispvms: false,
    ...more,
  });
  systemInfo = join(dir, 'system-info.json');
  await writeFile(
    systemInfo,
    JSON.stringify({
      domains: {
        dom0: domain('AdminVM', '00000000-0000-0000-0000-000000000000'),
        'debian-12': domain('TemplateVM', 'c9024a97-9b15-46cc-8341-38d75d5d421b'),
        work: domain('AppVM', 'b3eb69d0-f9d9-4c3c-ad5c-454500303ea4', { default_dispvm: 'dvm' }),
        dvm: domain('AppVM', '5f0e4b7e-3c53-4a57-9d0b-7f2b0c1b6a10', { template_for_dispvms: true }),
      },
    }),
  );
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function evaluate(
  source: string,
  target: string,
  call: string,
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await policyCliMain(
    [
      'node',
      'odyssey-policy',
      'eval',
      '--policy-dir',
      policyDir,
      '--system-info',
      systemInfo,
      source,
      target,
      call,
    ],
    { out: (t) => (out += t), err: (t) => (err += t) },
  );
  return { code, out, err };
}

describe('the packaged default policy', () => {
  it('loads with the admin policy; allows what the misc socket serves to dom0 and what the agent serves to a disposable', async () => {
    const state = loadPolicy({ dirs: [policyDir], legacyDir: join(dir, 'no-legacy') });
    expect(state.error).toBeNull();
    const own = state.policy?.rules.filter((r) => r.file.endsWith('/90-default.policy')) ?? [];
    const allowed = (target: string) =>
      own.filter((r) => r.action.type === 'allow' && r.target.text === target).map((r) => r.service ?? '*');
    expect(own.every((r) => r.argument === null && r.source.text === '@anyvm')).toBe(true);
    expect(allowed('dom0')).toEqual(MISC_SERVICES);
    const served = await readdir(TEMPLATE_RPC);
    expect(allowed('@dispvm')).toEqual(['qubes.VMShell', 'qubes.VMExec']);
    expect(allowed('@dispvm').every((service) => served.includes(service))).toBe(true);
    expect(
      own.filter((r) => r.action.type !== 'allow').map((r) => [r.service, r.target.text, r.action.type]),
    ).toEqual([
      ['qubes.VMShell', '@anyvm', 'deny'],
      ['qubes.VMExec', '@anyvm', 'deny'],
      ['qubes.VMRootShell', '@anyvm', 'deny'],
    ]);
  });

  it.each([
    ['qubes.VMShell', 'allow target=@dispvm:dvm'],
    ['qubes.VMExec', 'allow target=@dispvm:dvm'],
  ])('lets a qube call %s in a new disposable of its default_dispvm', async (call, decision) => {
    expect(await evaluate('work', '@dispvm', call)).toEqual({
      code: 0,
      out: expect.stringMatching(new RegExp(`^${decision}\n`)) as string,
      err: '',
    });
  });

  it.each([
    ['debian-12', 'dom0', 'qubes.FeaturesRequest'],
    ['work', 'dom0', 'qubes.FeaturesRequest'],
    ['work', '@adminvm', 'qubes.NotifyUpdates'],
    ['debian-12', 'dom0', 'qubes.NotifyTools'],
  ])('lets %s call %s %s', async (source, target, call) => {
    expect(await evaluate(source, target, call)).toEqual({
      code: 0,
      out: expect.stringMatching(/^allow target=dom0\n/) as string,
      err: '',
    });
  });

  it.each([
    ['work', 'debian-12', 'qubes.FeaturesRequest'],
    ['work', 'dom0', 'qubes.VMShell'],
    ['work', 'debian-12', 'qubes.VMShell'],
    ['work', 'debian-12', 'qubes.VMExec'],
    ['work', 'debian-12', 'qubes.VMRootShell'],
    ['work', 'dom0', 'admin.vm.List'],
  ])('refuses %s calling %s %s', async (source, target, call) => {
    const result = await evaluate(source, target, call);
    expect(result.code).toBe(1);
    expect(result.out).toMatch(/^deny /);
    expect(result.err).toBe('');
  });
});
