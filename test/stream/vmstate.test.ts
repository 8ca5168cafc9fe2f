import { describe, expect, test } from 'vitest';
import { decodeDeviceState, parseVmdesc } from '../../src/stream/vmstate.js';
import { Bytes } from '../helpers/stream-bytes.js';

const vmdesc = parseVmdesc(JSON.stringify({
  page_size: 4096,
  devices: [{
    name: 'timer', instance_id: 0, vmsd_name: 'timer', version: 2,
    fields: [
      { name: 'cpu_ticks_offset', type: 'int64', size: 8 },
      { name: 'enabled', type: 'bool', size: 1 },
      { name: 'regs', type: 'uint16', size: 2, array_len: 3 },
      { name: 'blob', type: 'buffer', size: 4 },
      { name: 'inner', type: 'struct', size: 5, struct: { vmsd_name: 'inner', version: 1, fields: [
        { name: 'a', type: 'uint8', size: 1 }, { name: 'b', type: 'uint32', size: 4 }] } },
    ],
    subsections: [{ vmsd_name: 'timer/dticks', version: 1, fields: [{ name: 'dticks', type: 'int64', size: 8 }] }],
  }],
}));

function body(): Buffer {
  return new Bytes()
    .be64(-5n & 0xffffffffffffffffn).u8(1)
    .be16(1).be16(2).be16(0xffff)
    .raw([0xde, 0xad, 0xbe, 0xef])
    .u8(7).be32(0x01020304)
    .u8(0x05).str('timer/dticks').be32(1).be64(42)
    .build();
}

describe('decodeDeviceState', () => {
  test('splits a body into typed fields, arrays, structs and subsections', () => {
    const decoded = decodeDeviceState(body(), vmdesc.devices[0]!);
    expect(decoded.exact).toBe(true);
    expect(decoded.fields.map((f) => [f.path, f.value])).toEqual([
      ['cpu_ticks_offset', -5],
      ['enabled', true],
      ['regs[0]', 1],
      ['regs[1]', 2],
      ['regs[2]', 0xffff],
      ['blob', 'deadbeef'],
      ['inner.a', 7],
      ['inner.b', 0x01020304],
      ['timer/dticks.dticks', 42],
    ]);
    expect(decoded.fields.at(-1)!.offset).toBe(body().length - 8);
  });

  test('reports a body the description does not fit', () => {
    const short = decodeDeviceState(body().subarray(0, 10), vmdesc.devices[0]!);
    expect(short.exact).toBe(false);
    expect(short.problem).toMatch(/runs past the body/);
    const long = decodeDeviceState(Buffer.concat([body(), Buffer.from([1])]), vmdesc.devices[0]!);
    expect(long).toMatchObject({ exact: false, problem: '1 bytes left after the described fields' });
  });
});
