import { describe, expect, it } from 'vitest';

import { pyFloat, sizeToHuman } from '../../src/backup/py-format.js';
import { fileHeader } from '../../src/backup/tar.js';
import { parseTar } from './fixture.js';

describe("Python's number texts", () => {
  it('prints floats as str() does', () => {
    expect(pyFloat(100)).toBe('100.0');
    expect(pyFloat(0)).toBe('0.0');
    expect(pyFloat(33.333333333333336)).toBe('33.333333333333336');
    expect(pyFloat(0.0001)).toBe('0.0001');
    expect(pyFloat(0.00001)).toBe('1e-05');
    expect(pyFloat(1.5e-7)).toBe('1.5e-07');
  });

  it('rounds sizes as round(x, 1), exact ties to even', () => {
    expect(sizeToHuman(1023)).toBe('1023');
    expect(sizeToHuman(1024)).toBe('1.0 KiB');
    // 1.25 and 1.75 KiB are exact ties: Python gives 1.2 and 1.8.
    expect(sizeToHuman(1280)).toBe('1.2 KiB');
    expect(sizeToHuman(1792)).toBe('1.8 KiB');
    expect(sizeToHuman(1075)).toBe('1.0 KiB');
    expect(sizeToHuman(1076)).toBe('1.1 KiB');
    expect(sizeToHuman(3 * 1024 * 1024 + 1)).toBe('3.0 MiB');
    expect(sizeToHuman(2.5 * 1024 ** 4)).toBe('2560.0 GiB');
  });
});

describe('tar headers', () => {
  it('moves long names and sizes of 8 GiB and more to a pax header', () => {
    const name = `vm1/${'x'.repeat(120)}.img`;
    const big = 10 * 1024 ** 3;
    const [entry] = parseTar(Buffer.concat([fileHeader(name, 0, 0), Buffer.alloc(1024)]));
    expect(entry?.name).toBe(name);
    const header = fileHeader('vm1/root.img', big, 0);
    // A pax record counts its own length digits: "20 size=10737418240\n" is 20 bytes.
    expect(header.toString('latin1', 512, 533)).toBe(`20 size=${big}\n\0`);
    expect(header.length).toBe(3 * 512);
  });
});
