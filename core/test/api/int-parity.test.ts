import { readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import type { TestDaemon } from '../support/harness.js';
import { exc, request, startDaemon } from '../support/harness.js';
import { persistedXml } from '../support/persisted.js';
import { appendixA } from './fixture.js';

/**
 * Integers in Admin API writes as upstream reads and keeps them: Python's int(), which takes
 * `+5`, ` 5`, `007` and `1_000`, has no upper bound below 4300 digits and no negative zero.
 * Every expected reply and stored value here is what upstream's own handler (qubes-core-admin
 * 1ad5f9b8, served by scripts/differential/upstream_server.py) answered and wrote for the same
 * request on the same state; where upstream answers nothing (a Python error) ours is typed and
 * the comment says so.
 */
let d: TestDaemon;
afterEach(async () => d?.stop());

const text = async (method: string, dest: string, arg = '', payload: Buffer | string = '') =>
  (await d.call(method, dest, arg, payload)).toString('utf8');

const HUGE = '12345678901234567890123';
/** 2^53 + 1, the first integer a double cannot hold. */
const PAST_DOUBLE = '9007199254740993';

/** Stops the daemon (keeping its state) and starts another on the same state. */
async function restart(): Promise<void> {
  await d.daemon.stop();
  const stateDir = d.stateDir;
  const again = await startDaemon({ stateDir });
  d = {
    ...again,
    stop: async () => {
      await again.stop();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

describe('int properties', () => {
  it('keep every digit of a value beyond 2^53 in Get, GetAll and qubes.xml, across a restart', async () => {
    d = await appendixA();
    expect(await text('admin.vm.property.Set', 'work', 'memory', HUGE)).toBe('0\0');
    expect(await text('admin.vm.property.Set', 'work', 'vcpus', PAST_DOUBLE)).toBe('0\0');
    expect(await text('admin.property.Set', 'dom0', 'default_qrexec_timeout', `-${PAST_DOUBLE}`)).toBe('0\0');
    expect(await text('admin.vm.property.Get', 'work', 'memory')).toBe(`0\0default=False type=int ${HUGE}`);
    expect(await text('admin.vm.property.GetAll', 'work')).toContain(
      `\nmemory default=False type=int ${HUGE}\n`,
    );
    const xml = await persistedXml(d.stateDir);
    expect(xml).toContain(`<property name="memory">${HUGE}</property>`);
    expect(xml).toContain(`<property name="vcpus">${PAST_DOUBLE}</property>`);
    expect(xml).toContain(`<property name="default_qrexec_timeout">-${PAST_DOUBLE}</property>`);
    await restart();
    expect(await text('admin.vm.property.Get', 'work', 'memory')).toBe(`0\0default=False type=int ${HUGE}`);
    expect(await text('admin.vm.property.Get', 'work', 'vcpus')).toBe(
      `0\0default=False type=int ${PAST_DOUBLE}`,
    );
    expect(await text('admin.vm.property.Get', 'work', 'qrexec_timeout')).toBe(
      `0\0default=True type=int -${PAST_DOUBLE}`,
    );
  });

  it('take what int() takes, store it as int() reads it, and refuse the rest as upstream does', async () => {
    d = await appendixA();
    const ok = '0\0';
    const notInt = exc('QubesValueError', 'Failed to parse property value as int');
    const cases: [string, string, string, string][] = [
      // property, payload, reply, value Get shows afterwards
      ['memory', '007', ok, '7'],
      ['memory', '+5', ok, '5'],
      ['memory', ' 6', ok, '6'],
      ['memory', '8 ', ok, '8'],
      ['memory', '\t9\n', ok, '9'],
      ['memory', '\x0b10\x0c', ok, '10'],
      ['memory', '1_000', ok, '1000'],
      ['memory', `00${HUGE}`, ok, HUGE],
      ['memory', '0x10', notInt, HUGE],
      ['memory', '1__0', notInt, HUGE],
      ['memory', '_1', notInt, HUGE],
      ['memory', '+ 5', notInt, HUGE],
      ['memory', '5.0', notInt, HUGE],
      ['memory', '', notInt, HUGE],
      ['memory', '\x1c5', notInt, HUGE],
      // Python's int() reads ٣ as 3, but the payload is refused as non-ASCII before.
      ['memory', '\u0663', exc('QubesValueError', 'Non-ASCII bytes in property value'), HUGE],
      ['memory', '-0', exc('QubesPropertyValueError', 'memory must be positive'), HUGE],
      ['memory', `-${HUGE}`, exc('QubesPropertyValueError', 'memory must be positive'), HUGE],
      ['maxmem', '-0', ok, '0'],
      ['maxmem', `-${HUGE}`, exc('QubesPropertyValueError', 'maxmem must be positive or zero'), '0'],
      // int() converts at most 4300 digits, leading zeros counted.
      ['shutdown_timeout', '1'.repeat(4300), ok, '1'.repeat(4300)],
      ['shutdown_timeout', '1'.repeat(4301), notInt, '1'.repeat(4300)],
      ['shutdown_timeout', `${'0'.repeat(4300)}5`, notInt, '1'.repeat(4300)],
      ['backup_timestamp', `-${HUGE}`, ok, `-${HUGE}`],
    ];
    for (const [prop, payload, reply, shown] of cases) {
      expect([prop, payload, await text('admin.vm.property.Set', 'work', prop, payload)]).toEqual([
        prop,
        payload,
        reply,
      ]);
      expect([prop, payload, await text('admin.vm.property.Get', 'work', prop)]).toEqual([
        prop,
        payload,
        `0\0default=False type=int ${shown}`,
      ]);
    }
    expect(await persistedXml(d.stateDir)).toContain(`<property name="backup_timestamp">-${HUGE}</property>`);
  });

  it('parse a value beyond 2^53 before refusing to set a computed or fixed property', async () => {
    d = await appendixA();
    expect(await text('admin.vm.property.Set', 'work', 'xid', HUGE)).toBe(
      exc('QubesPropertyValueError', "property 'xid' on AppVM instance cannot be set"),
    );
    expect(await text('admin.vm.property.Set', 'dom0', 'qid', HUGE)).toBe(
      exc('QubesPropertyValueError', "property 'qid' on AdminVM instance cannot be set"),
    );
    expect(await text('admin.property.Set', 'dom0', 'no_cpus', HUGE)).toBe(
      exc('QubesPropertyValueError', "property 'no_cpus' on Qubes instance cannot be set"),
    );
    expect(await text('admin.vm.property.Set', 'work', 'xid', `${'0'.repeat(4300)}5`)).toBe(
      exc('QubesValueError', 'Failed to parse property value as int'),
    );
  });

  it("show a template's or the global value beyond 2^53 as the default of the qubes that follow it", async () => {
    d = await appendixA();
    await d.ok('admin.vm.property.Set', 'debian-12', 'memory', `00${HUGE}`);
    await d.ok('admin.vm.property.Set', 'debian-12', 'maxmem', '+99999999999999999999');
    await d.ok('admin.property.Set', 'dom0', 'default_shutdown_timeout', `-${PAST_DOUBLE}`);
    await d.ok('admin.property.Set', 'dom0', 'stats_interval', '-0');
    expect(await text('admin.vm.property.Get', 'work', 'memory')).toBe(`0\0default=True type=int ${HUGE}`);
    expect(await text('admin.vm.property.GetDefault', 'work', 'memory')).toBe(`0\0type=int ${HUGE}`);
    expect(await text('admin.vm.property.Get', 'work', 'maxmem')).toBe(
      '0\0default=True type=int 99999999999999999999',
    );
    expect(await text('admin.vm.property.Get', 'work', 'shutdown_timeout')).toBe(
      `0\0default=True type=int -${PAST_DOUBLE}`,
    );
    expect(await text('admin.property.Get', 'dom0', 'stats_interval')).toBe('0\0default=False type=int 0');
  });

  it('name a label index beyond 2^53 as int() reads it', async () => {
    d = await appendixA();
    expect(await text('admin.vm.property.Set', 'work', 'label', 'label-99999999999999999999')).toBe(
      exc('QubesLabelNotFoundError', 'Label does not exist: 99999999999999999999'),
    );
    expect(await text('admin.vm.property.Set', 'work', 'label', 'label-0003')).toBe('0\0');
    expect(await text('admin.vm.property.Get', 'work', 'label')).toBe('0\0default=False type=label yellow');
    expect(await text('admin.label.Get', 'dom0', '99999999999999999999')).toBe(
      exc('QubesLabelNotFoundError', 'Label does not exist: 99999999999999999999'),
    );
  });
});

describe('revisions_to_keep and volume sizes', () => {
  /** A file-reflink pool (no maximum) with a qube whose volumes are in it. */
  async function reflinkQube(): Promise<void> {
    d = await appendixA();
    await d.ok(
      'admin.pool.Add',
      'dom0',
      'file-reflink',
      `name=rl\ndir_path=${d.stateDir}/rl\nsetup_check=False\n`,
    );
    await d.ok('admin.vm.CreateInPool.AppVM', 'dom0', '', 'name=rv label=red pool=rl');
  }

  const infoLine = async (method: string, dest: string, arg: string) =>
    (await text(method, dest, arg)).split('\n').find((l) => l.startsWith('revisions_to_keep='));

  it('keep all 19 digits validate_number takes, in Info and qubes.xml, across a restart; -0 is 0', async () => {
    await reflinkQube();
    const max = '9999999999999999999';
    expect(await text('admin.vm.volume.Set.revisions_to_keep', 'rv', 'private', max)).toBe('0\0');
    expect(await text('admin.pool.Set.revisions_to_keep', 'dom0', 'rl', PAST_DOUBLE)).toBe('0\0');
    expect(await infoLine('admin.vm.volume.Info', 'rv', 'private')).toBe(`revisions_to_keep=${max}`);
    expect(await infoLine('admin.pool.Info', 'dom0', 'rl')).toBe(`revisions_to_keep=${PAST_DOUBLE}`);
    const xml = await persistedXml(d.stateDir);
    expect(xml).toMatch(new RegExp(`<volume name="private" pool="rl" [^>]*revisions_to_keep="${max}"`));
    expect(xml).toMatch(new RegExp(`<pool name="rl" [^>]*revisions_to_keep="${PAST_DOUBLE}"`));
    await restart();
    expect(await infoLine('admin.vm.volume.Info', 'rv', 'private')).toBe(`revisions_to_keep=${max}`);
    expect(await infoLine('admin.pool.Info', 'dom0', 'rl')).toBe(`revisions_to_keep=${PAST_DOUBLE}`);
    // -0 is 0, and what validate_number refuses stays refused.
    const set = (payload: string) => text('admin.vm.volume.Set.revisions_to_keep', 'rv', 'private', payload);
    expect(await set('-9999999999999999999')).toBe(
      exc('QubesValueError', 'Invalid value for revisions_to_keep'),
    );
    expect(await set('10000000000000000000')).toBe(
      exc('ProtocolError', 'Revisions to keep is bigger than 19 decimal digits'),
    );
    for (const payload of ['+5', ' 5', '5\n', '1_0', '--1', '\u0663'])
      expect([payload, await set(payload)]).toEqual([
        payload,
        exc('ProtocolError', 'Revisions to keep contains non ASCII digits'),
      ]);
    expect(await set('007')).toBe(exc('ProtocolError', 'Revisions to keep contains spurious leading zeros'));
    expect(await text('admin.pool.Set.revisions_to_keep', 'dom0', 'rl', '-9999999999999999999')).toBe(
      exc('ProtocolError', "Value can't be lower than -1"),
    );
    expect(await set('-0')).toBe('0\0');
    expect(await infoLine('admin.vm.volume.Info', 'rv', 'private')).toBe('revisions_to_keep=0');
  });

  it("give a new volume its pool driver's revisions_to_keep: file-reflink's count for volatile and snapshots too", async () => {
    await reflinkQube();
    const add = (driver: string, name: string, extra: string) =>
      d.ok('admin.pool.Add', 'dom0', driver, `name=${name}\ndir_path=${d.stateDir}/${name}\n${extra}`);
    await add('file-reflink', 'r7', 'setup_check=False\nrevisions_to_keep=007\n');
    await add('file', 'f0', 'revisions_to_keep=0\n');
    await d.ok(
      'admin.vm.CreateInPool.AppVM',
      'dom0',
      '',
      'name=r7v label=red pool:private=r7 pool:volatile=r7',
    );
    await d.ok('admin.vm.CreateInPool.TemplateVM', 'dom0', '', 'name=rt label=red pool=rl');
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'rt', 'name=rta label=red');
    await d.ok('admin.vm.CreateInPool.StandaloneVM', 'dom0', '', 'name=fs label=red pool=f0');
    await d.ok('admin.vm.property.Set', 'rv', 'template_for_dispvms', 'True');
    await d.ok('admin.vm.Create.DispVM', 'dom0', 'rv', 'name=disp1 label=red');
    const kept = async (vm: string) => {
      const out: string[] = [];
      for (const vol of ['root', 'private', 'volatile', 'kernel'])
        out.push(`${vol}:${(await infoLine('admin.vm.volume.Info', vm, vol))?.split('=')[1]}`);
      return [vm, ...out];
    };
    // Upstream's replies for the same calls, volume by volume.
    expect(await kept('rv')).toEqual(['rv', 'root:0', 'private:1', 'volatile:1', 'kernel:0']);
    expect(await kept('r7v')).toEqual(['r7v', 'root:0', 'private:7', 'volatile:7', 'kernel:0']);
    expect(await kept('rt')).toEqual(['rt', 'root:1', 'private:1', 'volatile:1', 'kernel:0']);
    expect(await kept('rta')).toEqual(['rta', 'root:1', 'private:1', 'volatile:0', 'kernel:0']);
    expect(await kept('fs')).toEqual(['fs', 'root:0', 'private:0', 'volatile:0', 'kernel:0']);
    expect(await kept('disp1')).toEqual(['disp1', 'root:0', 'private:1', 'volatile:1', 'kernel:0']);
    expect(await kept('debian-12')).toEqual(['debian-12', 'root:1', 'private:1', 'volatile:0', 'kernel:0']);
    expect(await text('admin.vm.volume.Info', 'rv', 'volatile')).toBe(
      '0\0pool=rl\nvid=appvms/rv/volatile\nsize=10737418240\nusage=0\nrw=True\nsource=\n' +
        `path=${d.stateDir}/rl/appvms/rv/volatile-dirty.img\nsave_on_stop=False\nsnap_on_start=False\n` +
        'revisions_to_keep=1\nephemeral=False\nis_outdated=False\n',
    );
    expect(await persistedXml(d.stateDir)).toContain(
      '<volume name="volatile" pool="rl" vid="appvms/rv/volatile" revisions_to_keep="1" rw="True" ' +
        'save_on_stop="False" snap_on_start="False" size="10737418240"/>',
    );
    // What qubes.xml holds for a volume stays, as upstream reads it back.
    await d.ok('admin.vm.volume.Set.revisions_to_keep', 'rv', 'volatile', '0');
    await restart();
    expect(await infoLine('admin.vm.volume.Info', 'rv', 'volatile')).toBe('revisions_to_keep=0');
    expect(await infoLine('admin.vm.volume.Info', 'rt', 'volatile')).toBe('revisions_to_keep=1');
  });

  it('take pool.Add parameters as int() reads them, a file-reflink pool keeping the text', async () => {
    d = await appendixA();
    const add = (driver: string, name: string, value: string, extra = '') =>
      text(
        'admin.pool.Add',
        'dom0',
        driver,
        `name=${name}\ndir_path=${d.stateDir}/${name}\n${extra}revisions_to_keep=${value}\n`,
      );
    expect(await add('file-reflink', 'r1', '007', 'setup_check=False\n')).toBe('0\0');
    expect(await add('file-reflink', 'r2', '1_000', 'setup_check=False\n')).toBe('0\0');
    expect(await add('file-reflink', 'r3', ' 5', 'setup_check=False\n')).toBe('0\0');
    // Upstream's file pool reads its parameter through its own setter, int() included.
    expect(await add('file', 'f1', '+1')).toBe('0\0');
    expect(await add('file', 'f2', '-0')).toBe('0\0');
    expect(await infoLine('admin.pool.Info', 'dom0', 'r1')).toBe('revisions_to_keep=007');
    expect(await infoLine('admin.pool.Info', 'dom0', 'r2')).toBe('revisions_to_keep=1_000');
    expect(await infoLine('admin.pool.Info', 'dom0', 'r3')).toBe('revisions_to_keep= 5');
    expect(await infoLine('admin.pool.Info', 'dom0', 'f1')).toBe('revisions_to_keep=1');
    expect(await infoLine('admin.pool.Info', 'dom0', 'f2')).toBe('revisions_to_keep=0');
    await d.ok('admin.vm.CreateInPool.AppVM', 'dom0', '', 'name=v1 label=red pool:private=r1');
    expect(await infoLine('admin.vm.volume.Info', 'v1', 'private')).toBe('revisions_to_keep=7');
    expect(await persistedXml(d.stateDir)).toMatch(/<pool name="r1" [^>]*revisions_to_keep="007"/);
    await restart();
    expect(await infoLine('admin.pool.Info', 'dom0', 'r1')).toBe('revisions_to_keep=007');
    expect(await infoLine('admin.vm.volume.Info', 'v1', 'private')).toBe('revisions_to_keep=7');
    // Upstream takes these and fails later, creating a volume in the pool (no reply); ours refuses at once.
    expect(await add('file-reflink', 'r4', '0x10', 'setup_check=False\n')).toBe(
      exc('QubesValueError', "Invalid value for revisions_to_keep: '0x10'"),
    );
  });

  it('refuse a size beyond 2^53 bytes with a typed error (upstream fails without a reply)', async () => {
    d = await appendixA();
    expect(await text('admin.vm.volume.Resize', 'work', 'private', PAST_DOUBLE)).toBe(
      exc('StoragePoolException', `Volume size too large: ${PAST_DOUBLE}`),
    );
    expect(await text('admin.vm.volume.Resize', 'work', 'private', '10000000000000000000')).toBe(
      exc('ProtocolError', 'Volume size is bigger than 19 decimal digits'),
    );
  });
});

describe("admin.vm.volume.ImportWithSize's size line", () => {
  const importWithSize = (payload: string) =>
    text('admin.vm.volume.ImportWithSize', 'work', 'private', payload);
  const sizeLine = async () =>
    (await text('admin.vm.volume.Info', 'work', 'private')).split('\n').find((l) => l.startsWith('size='));

  it("is read with validate_number's checks and messages, as upstream's ImportBegin reads it", async () => {
    d = await appendixA();
    const cases: [string, string][] = [
      ['+5', exc('ProtocolError', 'Size of new data contains non ASCII digits')],
      [' 5', exc('ProtocolError', 'Size of new data contains non ASCII digits')],
      ['5 ', exc('ProtocolError', 'Size of new data contains non ASCII digits')],
      ['-5', exc('ProtocolError', 'Size of new data contains non ASCII digits')],
      ['1_0', exc('ProtocolError', 'Size of new data contains non ASCII digits')],
      ['05', exc('ProtocolError', 'Size of new data contains spurious leading zeros')],
      ['00', exc('ProtocolError', 'Size of new data contains spurious leading zeros')],
      ['99999999999999999999', exc('ProtocolError', 'Size of new data is bigger than 19 decimal digits')],
      // Upstream takes these and its storage fails without a reply (OverflowError, EFBIG); ours is typed.
      ['9999999999999999999', exc('StoragePoolException', 'Volume size too large: 9999999999999999999')],
      [PAST_DOUBLE, exc('StoragePoolException', `Volume size too large: ${PAST_DOUBLE}`)],
      // Upstream's qubesd-query refuses these lines before qubesd sees them, answering nothing.
      ['5\r', exc('ProtocolError', 'Invalid size of new data')],
      ['1'.repeat(21), exc('ProtocolError', 'Invalid size of new data')],
    ];
    for (const [line, reply] of cases)
      expect([line, await importWithSize(`${line}\nhello`)]).toEqual([line, reply]);
    expect(await sizeLine()).toBe('size=2147483648');
    expect(await importWithSize('5\nhello')).toBe('0\0');
    expect(await sizeLine()).toBe('size=5');
    expect(await readFile(join(d.stateDir, 'appvms/work/private.img'), 'utf8')).toBe('hello');
  });

  it('takes an empty line as no size given: the data replaces the volume at its current size', async () => {
    d = await appendixA();
    await d.ok('admin.vm.volume.ImportWithSize', 'work', 'private', '5\nhello');
    expect(await importWithSize('\nworld')).toBe('0\0');
    expect(await sizeLine()).toBe('size=5');
    expect(await readFile(join(d.stateDir, 'appvms/work/private.img'), 'utf8')).toBe('world');
  });
});

describe('admin.vm.Create.* with a key given twice', () => {
  it("refuses a repeated key only once a value of it was taken, as upstream's keyword arguments do", async () => {
    d = await appendixA();
    const cases: [string, string, string, string][] = [
      [
        'Create',
        '',
        'name=a label=nosuch label=red',
        exc('QubesLabelNotFoundError', 'Label does not exist: untrusted label'),
      ],
      ['Create', '', 'name=a label=red label=nosuch', exc('ProtocolError', 'Options must be unique')],
      ['Create', '', 'name=a name=b label=red', exc('ProtocolError', 'Options must be unique')],
      [
        'Create',
        '',
        'name=work label=nosuch label=red',
        exc('QubesVMAlreadyExistsError', 'Qube already exists: work'),
      ],
      [
        'Create',
        'nosuchtpl',
        'name=a label=nosuch label=red',
        exc('QubesVMNotFoundError', "No such domain: 'nosuchtpl'"),
      ],
      [
        'Create',
        '',
        'label=nosuch label=nosuch2 name=a',
        exc('ProtocolError', 'Creation requested without key: label'),
      ],
      [
        'Create',
        '',
        'label=nosuch label=nosuch2',
        exc('ProtocolError', 'Creation requested without key: name'),
      ],
      // The template from the argument is one of the keyword arguments.
      ['Create', 'debian-12', 'name=a label=red template=x', exc('ProtocolError', 'Options must be unique')],
      [
        'Create',
        'nosuchtpl',
        'name=a label=red template=x',
        exc('ProtocolError', 'Options does not match: name, label, pool, pool:'),
      ],
      [
        'CreateInPool',
        '',
        'name=a label=red pool=varlibqubes pool=varlibqubes',
        exc('ProtocolError', "Option 'pool' must be unique"),
      ],
      [
        'CreateInPool',
        '',
        'name=a label=red pool=nosuch pool=varlibqubes',
        exc('QubesException', 'Unknown storage pool nosuch'),
      ],
      [
        'CreateInPool',
        '',
        'name=a label=red pool=nosuch1 pool=nosuch2',
        exc('QubesException', 'Unknown storage pool nosuch2'),
      ],
      [
        'CreateInPool',
        '',
        'name=a label=red pool:root=varlibqubes pool:root=varlibqubes',
        exc('ProtocolError', "Option 'pool:root' must be unique"),
      ],
      [
        'CreateInPool',
        '',
        'name=a label=red pool:private=nosuch1 pool:private=varlibqubes',
        exc('QubesException', 'Unknown storage pool nosuch1'),
      ],
      [
        'CreateInPool',
        '',
        'name=a label=red pool:private=nosuch1 pool:volatile=nosuch2',
        exc('QubesException', 'Unknown storage pool nosuch2'),
      ],
      [
        'CreateInPool',
        '',
        'name=a label=red pool=nosuch1 pool:private=nosuch2',
        exc('QubesException', 'Unknown storage pool nosuch2'),
      ],
      [
        'CreateInPool',
        '',
        'name=a label=red pool=nosuch pool:private=varlibqubes',
        exc('QubesException', 'Unknown storage pool nosuch'),
      ],
      [
        'CreateInPool',
        '',
        'name=a label=nosuch label=red pool=nosuch',
        exc('QubesLabelNotFoundError', 'Label does not exist: untrusted label'),
      ],
    ];
    const before = await persistedXml(d.stateDir);
    for (const [method, arg, payload, reply] of cases) {
      expect([method, arg, payload, await text(`admin.vm.${method}.AppVM`, 'dom0', arg, payload)]).toEqual([
        method,
        arg,
        payload,
        reply,
      ]);
    }
    expect(await persistedXml(d.stateDir)).toBe(before);
  });
});

describe('firewall rules', () => {
  const firewallXml = () => readFile(join(d.stateDir, 'appvms', 'work', 'firewall.xml'), 'utf8');
  const expireXml = (value: string) =>
    '<firewall version="2">\n  <rules>\n    <rule>\n      <properties>\n' +
    '        <property name="action">accept</property>\n' +
    `        <property name="expire">${value}</property>\n` +
    '      </properties>\n    </rule>\n  </rules>\n</firewall>\n';

  it('keep expire as written, in Get and firewall.xml, across a restart', async () => {
    d = await appendixA();
    expect(await text('admin.vm.firewall.Set', 'work', '', 'action=accept expire=04102444800\n')).toBe('0\0');
    expect(await text('admin.vm.firewall.Get', 'work')).toBe('0\0action=accept expire=04102444800\n');
    expect(await firewallXml()).toBe(expireXml('04102444800'));
    await restart();
    expect(await text('admin.vm.firewall.Get', 'work')).toBe('0\0action=accept expire=04102444800\n');
    // An expire in the past, however written, drops the rule.
    expect(await text('admin.vm.firewall.Set', 'work', '', 'action=accept expire=0080\n')).toBe('0\0');
    expect(await text('admin.vm.firewall.Get', 'work')).toBe('0\0');
    expect(await firewallXml()).toBe('<firewall version="2">\n  <rules/>\n</firewall>\n');
  });

  it('take the digits int() converts in expire, and refuse more (upstream fails without a reply)', async () => {
    d = await appendixA();
    const padded = `${'0'.repeat(4290)}4102444800`;
    expect(await text('admin.vm.firewall.Set', 'work', '', `action=accept expire=${padded}\n`)).toBe('0\0');
    expect(await text('admin.vm.firewall.Get', 'work')).toBe(`0\0action=accept expire=${padded}\n`);
    expect(await firewallXml()).toBe(expireXml(padded));
    expect(await text('admin.vm.firewall.Set', 'work', '', `action=accept expire=0${padded}\n`)).toBe(
      exc('QubesValueError', 'bad expiration time'),
    );
    expect(await text('admin.vm.firewall.Get', 'work')).toBe(`0\0action=accept expire=${padded}\n`);
  });

  it('read dstports with int(), as upstream does, and print the numbers', async () => {
    d = await appendixA();
    const cases: [string, string, string][] = [
      ['+80', 'dstports=80-80', '80'],
      ['1_000', 'dstports=1000-1000', '1000'],
      ['\t81', 'dstports=81-81', '81'],
      ['+80-+90', 'dstports=80-90', '80-90'],
      ['82-0090', 'dstports=82-90', '82-90'],
    ];
    for (const [ports, shown, stored] of cases) {
      const rule = `action=accept proto=tcp dstports=${ports}`;
      expect([rule, await text('admin.vm.firewall.Set', 'work', '', `${rule}\n`)]).toEqual([rule, '0\0']);
      expect([rule, await text('admin.vm.firewall.Get', 'work')]).toEqual([
        rule,
        `0\0action=accept proto=tcp ${shown}\n`,
      ]);
      expect([rule, await firewallXml()]).toEqual([
        rule,
        expect.stringContaining(`<property name="dstports">${stored}</property>`),
      ]);
    }
  });
});

describe('admin.vm.Stats', () => {
  it('waits out a stats_interval longer than a timer holds instead of streaming without pause', async () => {
    d = await appendixA();
    // 2147484 s is past setTimeout's 2^31 - 1 ms, where a timer fires at once.
    await d.ok('admin.property.Set', 'dom0', 'stats_interval', '2147484');
    await d.ok('admin.vm.Start', 'work');
    let buf = '';
    const s = connect(d.socket);
    s.on('connect', () => s.end(request('admin.vm.Stats', 'dom0')));
    s.on('data', (c: Buffer) => (buf += c.toString('latin1')));
    let ended = false;
    s.on('end', () => (ended = true));
    await new Promise<void>((resolve) => s.on('data', () => buf.includes('\0work\0vm-stats\0') && resolve()));
    // A timer that fired at once would have sent the next ones by now.
    await new Promise((r) => setTimeout(r, 200));
    s.destroy();
    expect(buf.split('\0work\0vm-stats\0').length - 1).toBe(1);
    expect(ended).toBe(false);
  });
});
