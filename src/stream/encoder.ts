/**
 * Encoder: records back to the exact bytes they were decoded from (the save side of
 * migration/savevm.c). Body records are written by the codec that owns their type.
 *
 *   const encoder = new StreamEncoder(codecs);
 *   for (const record of records) { encoder.write(record); if (encoder.pending > 1 << 20) send(encoder.take()); }
 *   send(encoder.take());
 */
import { writeConfiguration } from './configuration.js';
import { EncodeError } from './errors.js';
import { FILE_MAGIC, SectionType, type FramingRecord } from './records.js';
import type { BaseRecord, SectionCodec } from './section-codec.js';
import { ByteWriter } from './writer.js';

/** Number of bytes the encoder writes for a framing record. */
export function framingRecordLength(record: FramingRecord): number {
  switch (record.type) {
    case 'header':
      return 8;
    case 'configuration': {
      let length = 1 + 4 + Buffer.byteLength(record.machineType, 'latin1');
      for (const sub of record.subsections) {
        length += 1 + 1 + sub.name.length + 4;
        if (sub.name === 'configuration/target-page-bits') length += 4;
        else if (sub.name === 'configuration/uuid') length += sub.uuid.length;
        else for (const capability of sub.capabilities) length += 1 + capability.length;
        if (sub.name === 'configuration/capabilities') length += 4;
      }
      return length;
    }
    case 'section-start':
      return 1 + 4 + 1 + Buffer.byteLength(record.idstr, 'latin1') + 4 + 4;
    case 'section-resume':
    case 'section-footer':
      return 5;
    case 'device-state':
    case 'packaged-data':
      return record.data.length;
    case 'command':
      return 5 + record.data.length;
    case 'eof':
      return 1;
    case 'vmdesc':
      return 5 + record.json.length;
  }
}

export class StreamEncoder<B extends BaseRecord = never> {
  private readonly writer: ByteWriter;
  private readonly codecByType = new Map<string, SectionCodec<B>>();

  constructor(codecs: readonly SectionCodec<B>[] = [], chunkSize?: number) {
    this.writer = new ByteWriter(chunkSize);
    for (const codec of codecs) {
      for (const type of codec.recordTypes) this.codecByType.set(type, codec);
    }
  }

  /** Bytes encoded and not yet taken. */
  get pending(): number {
    return this.writer.pending;
  }

  /** Encoded bytes so far, as chunks; the encoder starts afresh. */
  take(): Buffer[] {
    return this.writer.take();
  }

  /** Number of bytes `write` would add for `record`. */
  encodedLength(record: FramingRecord | B): number {
    const codec = this.codecByType.get(record.type);
    return codec === undefined ? framingRecordLength(record as FramingRecord) : codec.encodedLength(record as B);
  }

  /**
   * Passes the encoded bytes to `consume` and reuses their memory afterwards; `consume` must be
   * done with them when it returns. Saves the page faults of fresh output buffers.
   */
  drainTo(consume: (chunks: Buffer[]) => void): void {
    this.writer.drainTo(consume);
  }

  write(record: FramingRecord | B): void {
    const w = this.writer;
    const framing = record as FramingRecord;
    switch (framing.type) {
      case 'header':
        w.u32(FILE_MAGIC);
        w.u32(framing.version);
        return;
      case 'configuration':
        writeConfiguration(framing, w);
        return;
      case 'section-start':
        w.u8(framing.kind === 'start' ? SectionType.START : SectionType.FULL);
        w.u32(framing.sectionId);
        w.shortString(framing.idstr);
        w.u32(framing.instanceId);
        w.u32(framing.versionId);
        return;
      case 'section-resume':
        w.u8(framing.kind === 'part' ? SectionType.PART : SectionType.END);
        w.u32(framing.sectionId);
        return;
      case 'device-state':
      case 'packaged-data':
        w.bytes(framing.data);
        return;
      case 'section-footer':
        w.u8(SectionType.FOOTER);
        w.u32(framing.sectionId);
        return;
      case 'command':
        if (framing.data.length > 0xffff) throw new EncodeError(`command data of ${framing.data.length} bytes`);
        w.u8(SectionType.COMMAND);
        w.u16(framing.command);
        w.u16(framing.data.length);
        w.bytes(framing.data);
        return;
      case 'eof':
        w.u8(SectionType.EOF);
        return;
      case 'vmdesc':
        w.u8(SectionType.VMDESCRIPTION);
        w.u32(framing.json.length);
        w.bytes(framing.json);
        return;
      default: {
        const codec = this.codecByType.get(record.type);
        if (codec === undefined) throw new EncodeError(`no encoder for record type "${record.type}"`);
        codec.encode(record as B, w);
      }
    }
  }
}
