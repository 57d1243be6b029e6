/** Host set-up comes from the backend package's declaration, for in-tree and third-party backends alike. */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';

import { hostSetupOf } from '../src/host-setup.js';

let dir = '';
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = '';
});

async function thirdParty(conformance: unknown, script?: string): Promise<string> {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-host-setup-'));
  const pkg = { name: 'acme-backend', type: 'module', main: 'index.js', odyssey: { conformance } };
  await writeFile(join(dir, 'package.json'), JSON.stringify(pkg));
  await writeFile(join(dir, 'index.js'), 'export const createBackend = () => ({});\n');
  if (script !== undefined) {
    await writeFile(join(dir, 'setup.sh'), script);
    await chmod(join(dir, 'setup.sh'), 0o755);
  }
  return dir;
}

it('reads the in-tree backends by name: lxc has a libvirtd option, xen runs nested, process needs nothing', async () => {
  const lxc = await hostSetupOf('lxc');
  expect(lxc.libvirtdEnv).toEqual({ LIBVIRTD_TEST_LXC: '1' });
  expect(lxc.nestedXen).toBe(false);
  expect((await hostSetupOf('xen')).nestedXen).toBe(true);
  const proc = await hostSetupOf('process');
  expect({ libvirtd: proc.libvirtdEnv, env: await proc.daemonEnv(), nested: proc.nestedXen }).toEqual({
    libvirtd: {},
    env: {},
    nested: false,
  });
});

it("gives a package directory the environment it declares, with its setup script's output mapped in", async () => {
  const pkg = await thirdParty(
    {
      libvirtdEnv: { ACME_LIBVIRTD: 'yes' },
      env: { ACME_URI: 'acme:///system' },
      setup: { script: 'setup.sh', env: { ACME_ROOT: 'root' } },
    },
    '#!/bin/sh\necho "building..." >&2\necho "root=/srv/acme root"\n',
  );
  const setup = await hostSetupOf(pkg);
  expect(setup.libvirtdEnv).toEqual({ ACME_LIBVIRTD: 'yes' });
  expect(await setup.daemonEnv()).toEqual({ ACME_URI: 'acme:///system', ACME_ROOT: '/srv/acme root' });
});

it('names the package and the key when a setup script fails or leaves out what is mapped', async () => {
  const failing = await thirdParty(
    { setup: { script: 'setup.sh', env: {} } },
    '#!/bin/sh\necho no disk >&2\nexit 1\n',
  );
  await expect((await hostSetupOf(failing)).daemonEnv()).rejects.toThrow(
    `${failing}/setup.sh failed: no disk`,
  );
  await rm(failing, { recursive: true });
  const silent = await thirdParty(
    { setup: { script: 'setup.sh', env: { ACME_ROOT: 'root' } } },
    '#!/bin/sh\n',
  );
  await expect((await hostSetupOf(silent)).daemonEnv()).rejects.toThrow(
    `${silent}/setup.sh printed no root=`,
  );
  await rm(silent, { recursive: true });
  const wrong = await thirdParty({ env: { ACME_URI: 1 } });
  await expect(hostSetupOf(wrong)).rejects.toThrow(
    `${wrong}/package.json: odyssey.conformance.env must be an object of strings`,
  );
});

it('has nothing for a lone module file, nor for a backend the loader will report missing', async () => {
  const moduleFile = fileURLToPath(new URL('fixtures/bookkeeping-backend.mjs', import.meta.url));
  for (const backend of [moduleFile, '/nonexistent/backend.mjs', 'no-such-backend']) {
    const setup = await hostSetupOf(backend);
    expect(
      { libvirtd: setup.libvirtdEnv, env: await setup.daemonEnv(), nested: setup.nestedXen },
      backend,
    ).toEqual({ libvirtd: {}, env: {}, nested: false });
  }
});
