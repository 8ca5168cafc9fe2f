/**
 * The client's messages, byte for byte: exact hex written out from proto.md, and the same
 * bytes from the independent builder (test/helpers/nbd-bytes.ts).
 */
import { describe, expect, test } from 'vitest';
import { Opt } from '../../src/nbd/constants.js';
import { encodeClientFlags, encodeGo, encodeMetaContext, encodeOption, encodeRequest } from '../../src/nbd/wire.js';
import * as B from '../helpers/nbd-bytes.js';

const hex = (b: Buffer): string => b.toString('hex');

describe('handshake messages', () => {
  test('client flags: FIXED_NEWSTYLE | NO_ZEROES', () => {
    expect(hex(encodeClientFlags(3))).toBe('00000003');
    expect(encodeClientFlags(3)).toEqual(B.clientFlags(3));
  });

  test('NBD_OPT_STRUCTURED_REPLY: IHAVEOPT, option 8, no data', () => {
    expect(hex(encodeOption(Opt.STRUCTURED_REPLY))).toBe('49484156454f5054' + '00000008' + '00000000');
    expect(encodeOption(Opt.STRUCTURED_REPLY)).toEqual(B.option(B.OPT.STRUCTURED_REPLY));
  });

  test('NBD_OPT_GO for "disk" asking NBD_INFO_BLOCK_SIZE', () => {
    const bytes = encodeGo('disk', [3]);
    expect(hex(bytes)).toBe('49484156454f5054' + '00000007' + '0000000c' + '00000004' + '6469736b' + '0001' + '0003');
    expect(bytes).toEqual(B.option(B.OPT.GO, B.goData('disk', [B.INFO.BLOCK_SIZE])));
  });

  test('NBD_OPT_GO for the default export, no infos', () => {
    expect(hex(encodeGo('', []))).toBe('49484156454f5054' + '00000007' + '00000006' + '00000000' + '0000');
  });

  test('NBD_OPT_SET_META_CONTEXT for "d" with base:allocation and a dirty bitmap', () => {
    const bytes = encodeMetaContext(Opt.SET_META_CONTEXT, 'd', ['base:allocation', 'qemu:dirty-bitmap:b']);
    const data = '00000001' + '64' + '00000002' + '0000000f' + Buffer.from('base:allocation').toString('hex') + '00000013' + Buffer.from('qemu:dirty-bitmap:b').toString('hex');
    expect(hex(bytes)).toBe('49484156454f5054' + '0000000a' + (data.length / 2).toString(16).padStart(8, '0') + data);
    expect(bytes).toEqual(B.option(B.OPT.SET_META_CONTEXT, B.metaContextData('d', ['base:allocation', 'qemu:dirty-bitmap:b'])));
  });

  test('NBD_OPT_LIST_META_CONTEXT with no query lists everything', () => {
    const bytes = encodeMetaContext(Opt.LIST_META_CONTEXT, '', []);
    expect(hex(bytes)).toBe('49484156454f5054' + '00000009' + '00000008' + '00000000' + '00000000');
    expect(bytes).toEqual(B.option(B.OPT.LIST_META_CONTEXT, B.metaContextData('', [])));
  });
});

describe('transmission requests', () => {
  test.each([
    ['READ', 0, 0, 1n, 0x10_0000, 65536, '25609513' + '0000' + '0000' + '0000000000000001' + '0000000000100000' + '00010000'],
    ['WRITE with FUA', 1, 1, 2n, 4096, 512, '25609513' + '0001' + '0001' + '0000000000000002' + '0000000000001000' + '00000200'],
    ['DISC', 0, 2, 3n, 0, 0, '25609513' + '0000' + '0002' + '0000000000000003' + '0000000000000000' + '00000000'],
    ['FLUSH', 0, 3, 4n, 0, 0, '25609513' + '0000' + '0003' + '0000000000000004' + '0000000000000000' + '00000000'],
    ['WRITE_ZEROES with NO_HOLE', 2, 6, 5n, 2 ** 40, 0xffff_f000, '25609513' + '0002' + '0006' + '0000000000000005' + '0000010000000000' + 'fffff000'],
    ['BLOCK_STATUS', 0, 7, 0xffff_ffff_ffffn, 2 ** 53 - 4096, 4096, '25609513' + '0000' + '0007' + '0000ffffffffffff' + '001ffffffffff000' + '00001000'],
  ])('%s', (_name, flags, type, handle, offset, length, expected) => {
    const bytes = encodeRequest({ flags, type, handle, offset, length });
    expect(hex(bytes)).toBe(expected);
    expect(bytes).toEqual(B.request(flags, type, handle, offset, length));
  });
});
