import { describe, expect, test } from 'vitest';
import { StreamDecoder } from '../../src/stream/decoder.js';
import { StreamEncoder } from '../../src/stream/encoder.js';
import { BadMagicError, type DecodeError, FramingError, LimitExceededError, TruncatedStreamError, UnknownFlagError } from '../../src/stream/errors.js';
import type { FramingRecord } from '../../src/stream/records.js';
import type { SectionCodec } from '../../src/stream/section-codec.js';
import { Bytes, configuration, footer, header, sectionStart } from '../helpers/stream-bytes.js';

/** A tiny self-describing body: u8 values, 0xff ends the body. */
interface ToyRecord {
  readonly type: 'toy';
  readonly value: number;
}
const toyCodec: SectionCodec<ToyRecord> = {
  idstr: 'toy',
  recordTypes: ['toy'],
  newDecoder: () => ({
    read: (reader) => ({ type: 'toy', value: reader.u8() }),
    endsBody: (record) => record.value === 0xff,
  }),
  encode: (record, writer) => writer.u8(record.value),
  encodedLength: () => 1,
};

type Rec = FramingRecord | ToyRecord;

function decodeChunks(chunks: Buffer[], options = {}): Rec[] {
  const decoder = new StreamDecoder<ToyRecord>([toyCodec], options);
  const out: Rec[] = [];
  for (const chunk of chunks) out.push(...decoder.push(chunk));
  out.push(...decoder.end());
  return out;
}

function encodeAll(records: Rec[]): Buffer {
  const encoder = new StreamEncoder<ToyRecord>([toyCodec], 64);
  for (const record of records) encoder.write(record);
  return Buffer.concat(encoder.take());
}

/** A device body that contains a fake footer for section 3 followed by junk. */
const trickyBody = Buffer.from([1, 2, 0x7e, 0, 0, 0, 3, 0x09, 0x7e, 0, 0, 0, 3, 0x04, 0, 0, 0, 9, 0, 5]);

function sampleStream(): Buffer {
  const b = new Bytes();
  header(b);
  configuration(b, 'pc-i440fx-7.2');
  b.u8(0x05).str('configuration/capabilities').be32(1).be32(1).str('x-ignore-shared');
  b.u8(0x08).be16(2).be16(4).be32(0xdeadbeef); // PING command
  sectionStart(b, 1, 2, 'toy', 0, 4).u8(1, 2, 0xff);
  footer(b, 2);
  b.u8(0x02).be32(2).u8(7, 0xff);
  footer(b, 2);
  b.u8(0x03).be32(2).u8(0xff);
  footer(b, 2);
  sectionStart(b, 4, 3, 'timer', 0, 2).raw(trickyBody);
  footer(b, 3);
  sectionStart(b, 4, 4, '0000:00:01.0/piix4_pm', 0, 3).raw([0, 0, 0, 0]);
  footer(b, 4);
  b.u8(0x00);
  const json = '{"page_size": 4096, "devices": []}';
  b.u8(0x06).be32(json.length).raw(json);
  return b.build();
}

describe('StreamDecoder framing', () => {
  test('decodes every framing record of a hand-built stream', () => {
    const records = decodeChunks([sampleStream()]);
    const types = records.map((r) => r.type);
    expect(types).toEqual([
      'header',
      'configuration',
      'command',
      'section-start',
      'toy',
      'toy',
      'toy',
      'section-footer',
      'section-resume',
      'toy',
      'toy',
      'section-footer',
      'section-resume',
      'toy',
      'section-footer',
      'section-start',
      'device-state',
      'section-footer',
      'section-start',
      'device-state',
      'section-footer',
      'eof',
      'vmdesc',
    ]);
    expect(records[1]).toMatchObject({
      machineType: 'pc-i440fx-7.2',
      subsections: [{ name: 'configuration/capabilities', capabilities: ['x-ignore-shared'] }],
    });
    const devices = records.filter((r) => r.type === 'device-state');
    expect(Buffer.compare(devices[0]!.data, trickyBody)).toBe(0);
    expect(devices[1]).toMatchObject({ idstr: '0000:00:01.0/piix4_pm', sectionId: 4 });
    expect(records.find((r) => r.type === 'section-resume')).toMatchObject({ kind: 'part', idstr: 'toy' });
  });

  test('configuration parameters reach body codecs', () => {
    const decoder = new StreamDecoder<ToyRecord>([toyCodec]);
    decoder.push(sampleStream());
    expect(decoder.parameters.capabilities).toEqual(['x-ignore-shared']);
    expect(decoder.parameters.pageSize).toBe(4096);
  });

  test('re-encoding gives the same bytes', () => {
    const stream = sampleStream();
    expect(encodeAll(decodeChunks([stream])).equals(stream)).toBe(true);
  });

  test('encodedLength of every record equals the bytes the encoder writes', () => {
    const encoder = new StreamEncoder<ToyRecord>([toyCodec]);
    for (const record of decodeChunks([sampleStream()])) {
      const length = encoder.encodedLength(record);
      encoder.write(record);
      expect(Buffer.concat(encoder.take()).length, record.type).toBe(length);
    }
  });

  test('every split point and one byte at a time give the same records', () => {
    const stream = sampleStream();
    const whole = decodeChunks([stream]);
    for (let split = 1; split < stream.length; split++) {
      const records = decodeChunks([stream.subarray(0, split), stream.subarray(split)]);
      expect(records, `split at ${split}`).toEqual(whole);
    }
    const bytewise = decodeChunks([...stream].map((byte) => Buffer.from([byte])));
    expect(bytewise).toEqual(whole);
  });

  test('a stream ending right after EOF (no vmdesc) is complete', () => {
    const b = header(new Bytes());
    sectionStart(b, 4, 3, 'timer', 0, 2).raw([1, 2, 3]);
    footer(b, 3).u8(0);
    const stream = b.build();
    for (let split = 1; split < stream.length; split++) {
      const records = decodeChunks([stream.subarray(0, split), stream.subarray(split)]);
      expect(records.map((r) => r.type)).toEqual(['header', 'section-start', 'device-state', 'section-footer', 'eof']);
    }
  });

  test('truncation anywhere is a TruncatedStreamError with an offset', () => {
    const stream = sampleStream();
    const eofAt = stream.length - 1 - 4 - '{"page_size": 4096, "devices": []}'.length - 1;
    for (let cut = 0; cut < stream.length; cut++) {
      if (cut === eofAt + 1) continue; // a stream may legitimately end right after EOF
      let error: unknown;
      try {
        decodeChunks([stream.subarray(0, cut)]);
      } catch (e) {
        error = e;
      }
      expect(error, `cut at ${cut}`).toBeInstanceOf(TruncatedStreamError);
      expect((error as TruncatedStreamError).offset).toBeLessThanOrEqual(cut);
    }
  });

  test('wrong magic and version', () => {
    expect(() => decodeChunks([Buffer.from('QEVX\0\0\0\x03', 'latin1')])).toThrow(BadMagicError);
    expect(() => decodeChunks([new Bytes().raw('QEVM').be32(2).build()])).toThrow(/unsupported stream version 2/);
    expect(() => decodeChunks([new Bytes().raw('QEVX').be32(3).build()])).not.toThrow(/container/);
  });

  test('a migstream container given as a stream says to decompress it first', () => {
    const container = Buffer.from('894d535a0d0a1a0a00020000', 'hex');
    expect(() => decodeChunks([container])).toThrow(/wrong magic 0x894d535a: this is a migstream container \(run "migstream decompress" on it first\)/);
  });

  test('unknown section type names the byte and the offset', () => {
    const stream = header(new Bytes()).u8(0x42).build();
    try {
      decodeChunks([stream]);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(UnknownFlagError);
      expect((error as DecodeError).offset).toBe(8);
      expect((error as Error).message).toMatch(/unknown section type 0x42/);
    }
  });

  test('a footer with the wrong id is a FramingError naming the section', () => {
    const b = header(new Bytes());
    sectionStart(b, 1, 2, 'toy', 0, 4).u8(0xff);
    footer(b, 9).u8(0);
    try {
      decodeChunks([b.build()]);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(FramingError);
      expect((error as DecodeError).section).toEqual({ id: 2, name: 'toy' });
      expect((error as Error).message).toMatch(/section 2 "toy"/);
    }
  });

  test('PART of a section never started', () => {
    const stream = header(new Bytes()).u8(0x02).be32(5).build();
    expect(() => decodeChunks([stream])).toThrow(/section id 5 was never started/);
  });

  test('a 4 GiB vmdesc length is refused before allocating', () => {
    const stream = header(new Bytes()).u8(0).u8(0x06).be32(0xffffffff).build();
    expect(() => decodeChunks([stream])).toThrow(LimitExceededError);
  });

  test('a device body with no footer within the limit', () => {
    const b = header(new Bytes());
    sectionStart(b, 4, 3, 'timer', 0, 2);
    const decoder = new StreamDecoder([], { maxDeviceStateBytes: 1000 });
    decoder.push(b.build());
    expect(() => decoder.push(Buffer.alloc(2000, 0x7e))).toThrow(LimitExceededError);
    expect(() => decoder.push(Buffer.alloc(1))).toThrow(LimitExceededError);
  });

  test('bytes after the vmdesc', () => {
    const stream = Buffer.concat([sampleStream(), Buffer.from([0])]);
    expect(() => decodeChunks([stream])).toThrow(/data after the end of the stream/);
  });
});
