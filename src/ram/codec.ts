/**
 * The `ram` section body codec (QEMU 7.2 migration/ram.c, section version 4): the decoder of
 * decoder.ts (ram_load_precopy's rules) and the encoder of encoder.ts, side by side.
 */
import type { SectionCodec } from '../stream/section-codec.js';
import { RamBodyDecoder } from './decoder.js';
import { encodeRamRecord, ramRecordLength } from './encoder.js';
import { RAM_RECORD_TYPES, type RamRecord } from './records.js';

export const ramCodec: SectionCodec<RamRecord> = {
  idstr: 'ram',
  recordTypes: RAM_RECORD_TYPES,
  newDecoder: () => new RamBodyDecoder(),
  encode: encodeRamRecord,
  encodedLength: ramRecordLength,
};
