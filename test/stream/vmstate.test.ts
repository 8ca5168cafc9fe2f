import { describe, expect, test } from 'vitest';
import { VmdescError } from '../../src/stream/errors.js';
import { MAX_VMDESC_DEPTH, decodeDeviceState, parseVmdesc } from '../../src/stream/vmstate.js';
import { Bytes } from '../helpers/stream-bytes.js';

const vmdesc = parseVmdesc(
  JSON.stringify({
    page_size: 4096,
    devices: [
      {
        name: 'timer',
        instance_id: 0,
        vmsd_name: 'timer',
        version: 2,
        fields: [
          { name: 'cpu_ticks_offset', type: 'int64', size: 8 },
          { name: 'enabled', type: 'bool', size: 1 },
          { name: 'regs', type: 'uint16', size: 2, array_len: 3 },
          { name: 'blob', type: 'buffer', size: 4 },
          {
            name: 'inner',
            type: 'struct',
            size: 5,
            struct: {
              vmsd_name: 'inner',
              version: 1,
              fields: [
                { name: 'a', type: 'uint8', size: 1 },
                { name: 'b', type: 'uint32', size: 4 },
              ],
            },
          },
        ],
        subsections: [{ vmsd_name: 'timer/dticks', version: 1, fields: [{ name: 'dticks', type: 'int64', size: 8 }] }],
      },
    ],
  }),
);

function body(): Buffer {
  return new Bytes()
    .be64(-5n & 0xffffffffffffffffn)
    .u8(1)
    .be16(1)
    .be16(2)
    .be16(0xffff)
    .raw([0xde, 0xad, 0xbe, 0xef])
    .u8(7)
    .be32(0x01020304)
    .u8(0x05)
    .str('timer/dticks')
    .be32(1)
    .be64(42)
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

// Found by the fuzzer (scripts/fuzz.ts, target "vmdesc"): the vmdesc is the sender's JSON.
describe('a vmdesc not shaped as QEMU writes it', () => {
  const device = (extra: Record<string, unknown>) => ({ name: 'd', instance_id: 0, vmsd_name: 'd', version: 1, ...extra });
  const parse = (value: unknown) => () => parseVmdesc(JSON.stringify(value));

  test('null entries, nameless subsections and wrong types are VmdescErrors naming the JSON path', () => {
    expect(parse({ devices: [null] })).toThrow(VmdescError);
    expect(parse({ devices: [null] })).toThrow('vmdesc devices[0]: not an object: null');
    expect(parse({ devices: [device({ subsections: [{ version: 1 }] })] })).toThrow('vmdesc devices[0].subsections[0].vmsd_name: not a string: undefined');
    expect(parse({ devices: [device({ fields: [{ name: 'f', type: 'uint8', size: -1 }] })] })).toThrow('devices[0].fields[0].size: not a non-negative integer: -1');
    expect(parse({ devices: {} })).toThrow('vmdesc devices: not an array');
    expect(() => parseVmdesc('{"devices": [')).toThrow(VmdescError);
  });

  test('nesting past MAX_VMDESC_DEPTH is refused, not a stack overflow', () => {
    // Written as text: JSON.stringify itself overflows the stack on 100,000 levels.
    const depth = 100_000;
    const nested = '{"vmsd_name":"s","version":1,"subsections":['.repeat(depth) + '{"vmsd_name":"leaf","version":1}' + ']}'.repeat(depth);
    const text = `{"devices":[{"name":"d","instance_id":0,"vmsd_name":"d","version":1,"subsections":[${nested}]}]}`;
    expect(() => parseVmdesc(text)).toThrow(`nested deeper than ${MAX_VMDESC_DEPTH}`);
  });

  test('an array of 2^53 elements of 0 bytes is one field; of 1 byte, a problem at once', () => {
    const huge = parseVmdesc(JSON.stringify({ devices: [device({ fields: [{ name: 'z', type: 'unused', size: 0, array_len: Number.MAX_SAFE_INTEGER }] })] }));
    expect(decodeDeviceState(Buffer.alloc(0), huge.devices[0]!)).toMatchObject({ exact: true, fields: [{ path: `z[0..${Number.MAX_SAFE_INTEGER - 1}]`, size: 0 }] });
    const big = parseVmdesc(JSON.stringify({ devices: [device({ fields: [{ name: 'b', type: 'uint8', size: 1, array_len: 1e15 }] })] }));
    expect(decodeDeviceState(Buffer.alloc(16), big.devices[0]!).problem).toMatch(/field b of 1000000000000000 × 1 bytes runs past the body \(16 bytes\)/);
  });
});
