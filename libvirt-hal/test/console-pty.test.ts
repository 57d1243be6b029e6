import { describe, expect, it } from 'vitest';
import { consolePtyPath } from '../src/console-pty.js';

/** Live XML as libvirt's QEMU driver returns it for a running domain: the pty filled in. */
const QEMU_LIVE = `<domain type='qemu' id='3'>
  <name>work</name>
  <devices>
    <serial type='pty'>
      <source path='/dev/pts/7'/>
      <log file='/run/odyssey/domains/work/console.log' append='off'/>
      <target type='isa-serial' port='0'><model name='isa-serial'/></target>
      <alias name='serial0'/>
    </serial>
    <console type='pty' tty='/dev/pts/7'>
      <source path='/dev/pts/7'/>
      <target type='serial' port='0'/>
      <alias name='serial0'/>
    </console>
  </devices>
</domain>`;

describe('consolePtyPath', () => {
  it("reads the console's pty from a live domain XML", () => {
    expect(consolePtyPath(QEMU_LIVE)).toBe('/dev/pts/7');
  });

  it("takes a Xen PV console's tty when it has no source element", () => {
    const xml = `<domain type='xen'><devices><console type='pty' tty='/dev/pts/2'><target type='xen' port='0'/></console></devices></domain>`;
    expect(consolePtyPath(xml)).toBe('/dev/pts/2');
  });

  it('falls back to a serial port on a pty', () => {
    const xml = `<domain><devices><serial type='pty'><source path='/dev/pts/4'/><target port='0'/></serial></devices></domain>`;
    expect(consolePtyPath(xml)).toBe('/dev/pts/4');
  });

  it('finds none in an inactive XML or on a file console', () => {
    const inactive = `<domain><devices><console type='pty'><target type='serial' port='0'/></console></devices></domain>`;
    const file = `<domain><devices><serial type='file'><source path='/tmp/console.log'/></serial></devices></domain>`;
    expect(consolePtyPath(inactive)).toBeUndefined();
    expect(consolePtyPath(file)).toBeUndefined();
  });
});
