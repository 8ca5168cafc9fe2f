/**
 * Push parser of container bytes: preamble, then frames with their header checks. Pushing
 * chunks of any size returns the frames they complete; `end()` says whether the file stopped
 * cleanly after the END frame. Frame contents are not decompressed here.
 *
 * What it checks, each failure naming the frame number and the header's byte offset:
 * magic and version; each header's own checksum; frame numbers 0, 1, 2, … in file order (a
 * swapped, repeated or missing frame breaks the sequence); known kind and codec, zero flags,
 * lengths within MAX_FRAME_BYTES; HEADER first, nothing after END; the input ending early.
 */
import { ChunkCursor } from '../bytes/chunk-cursor.js';
import { codecById, CODEC_IDS } from '../codecs/registry.js';
import { AFTER_PREAMBLE, ContainerMagicError, CorruptFrameError, FrameOrderError, TruncatedContainerError, type FrameRef } from './errors.js';
import { CONTAINER_MAGIC, FRAME_HEADER_LENGTH, FrameKind, MAX_FRAME_BYTES, PREAMBLE_LENGTH, READABLE_VERSIONS, decodeFrameHeader, frameKindName, type ContainerVersion, type FrameHeader } from './format.js';

export interface Frame extends FrameHeader {
  /** Byte offset of the frame header in the container. */
  readonly offset: number;
  /** The stored bytes (a view of the input when the frame lies within one input chunk). */
  readonly stored: Buffer;
}

export function frameRef(frame: { number: number; offset: number; kind: number }): FrameRef {
  return { frame: frame.number, offset: frame.offset, kind: frameKindName(frame.kind) };
}

const QEVM = Buffer.from('QEVM', 'latin1');

export class ContainerReader {
  /** The bytes not yet part of a returned frame; its offset is the container offset. */
  private readonly input = new ChunkCursor();
  private started = false;
  private ended = false;
  private nextNumber = 0;
  private header: FrameHeader | undefined;
  private headerOffset = 0;
  private containerVersion: ContainerVersion | undefined;
  /** An error found after frames that push() returned: thrown by the next push() or end(). */
  private deferred: unknown;

  /** The preamble's version, once read: it says which checksum the frames carry. */
  get version(): ContainerVersion | undefined {
    return this.containerVersion;
  }

  /** Frames read so far. */
  get frames(): number {
    return this.nextNumber;
  }

  /**
   * Frames before a bad one are returned first and the error is thrown by the next call: a
   * decompressor then checks those frames, so the first problem in file order is the one
   * reported, as direct mode (which reads frame by frame) reports it.
   */
  push(chunk: Buffer): Frame[] {
    if (this.deferred !== undefined) throw this.deferred;
    const frames: Frame[] = [];
    try {
      this.parse(chunk, frames);
    } catch (error) {
      if (frames.length === 0) throw error;
      this.deferred = error;
    }
    return frames;
  }

  private parse(chunk: Buffer, frames: Frame[]): void {
    if (chunk.length === 0) return;
    if (this.ended) {
      throw new FrameOrderError(
        'data after the END frame',
        { frame: this.nextNumber, offset: this.offset },
        {
          expected: 'the end of the file',
          actual: `${chunk.length} more bytes`,
        },
      );
    }
    this.input.push(chunk);
    if (!this.started) {
      if (this.buffered < PREAMBLE_LENGTH) return;
      this.readPreamble(this.take(PREAMBLE_LENGTH));
    }
    for (;;) {
      if (this.header === undefined) {
        if (this.buffered < FRAME_HEADER_LENGTH) return;
        this.headerOffset = this.offset;
        this.header = this.readHeader(this.take(FRAME_HEADER_LENGTH));
      }
      const header = this.header;
      if (this.buffered < header.storedLength) return;
      const stored = this.take(header.storedLength);
      this.header = undefined;
      frames.push({ ...header, offset: this.headerOffset, stored });
      if (header.kind === FrameKind.END) {
        this.ended = true;
        if (this.buffered > 0) {
          throw new FrameOrderError(
            'data after the END frame',
            { frame: this.nextNumber, offset: this.offset },
            {
              expected: 'the end of the file',
              actual: `${this.buffered} more bytes`,
            },
          );
        }
        return;
      }
    }
  }

  /** Throws TruncatedContainerError unless the END frame was read. */
  end(): void {
    if (this.deferred !== undefined) throw this.deferred;
    if (this.ended) return;
    if (!this.started) {
      throw new TruncatedContainerError(
        this.buffered === 0 ? 'the input is empty' : `the input ends inside the preamble (${this.buffered} bytes)`,
        { frame: 0, offset: 0 },
        { expected: `${PREAMBLE_LENGTH} bytes of preamble, then frames` },
      );
    }
    if (this.header !== undefined) {
      throw new TruncatedContainerError(
        `the input ends inside the frame: ${this.buffered} of ${this.header.storedLength} stored bytes present`,
        { frame: this.header.number, offset: this.headerOffset, kind: frameKindName(this.header.kind) },
        { expected: 'the rest of the frame, and frames up to END' },
      );
    }
    const where = { frame: this.nextNumber, offset: this.offset };
    if (this.nextNumber === 0 && this.buffered === 0) throw new TruncatedContainerError(AFTER_PREAMBLE, where, { expected: 'the HEADER frame' });
    throw new TruncatedContainerError(
      this.buffered > 0 ? `the input ends inside a frame header (${this.buffered} of ${FRAME_HEADER_LENGTH} bytes)` : `the input ends after frame ${this.nextNumber - 1} without an END frame`,
      where,
      { expected: 'more frames, up to the END frame' },
    );
  }

  private readPreamble(bytes: Buffer): void {
    this.containerVersion = checkPreamble(bytes);
    this.started = true;
  }

  private readHeader(bytes: Buffer): FrameHeader {
    const header = checkFrameHeader(bytes, this.nextNumber, this.headerOffset);
    this.nextNumber++;
    return header;
  }

  private get buffered(): number {
    return this.input.available;
  }

  private get offset(): number {
    return this.input.offset;
  }

  /** The next `length` bytes: a view when they lie in one chunk, else a copy. */
  private take(length: number): Buffer {
    const bytes = this.input.read(length);
    // What was read is a view or a copy: the list need not keep the chunks it passed.
    this.input.dropConsumed();
    return bytes;
  }
}

/** Checks the 12-byte preamble (magic, a version this reader reads, flags 0); returns the version. */
export function checkPreamble(bytes: Buffer): ContainerVersion {
  if (!bytes.subarray(0, CONTAINER_MAGIC.length).equals(CONTAINER_MAGIC)) {
    const hint = bytes.subarray(0, 4).equals(QEVM) ? ' (this is a QEMU migration stream: use it as it is, or compress it)' : '';
    throw new ContainerMagicError(`not a migstream container${hint}`, 0, {
      expected: `magic ${CONTAINER_MAGIC.toString('hex')}`,
      actual: bytes.subarray(0, CONTAINER_MAGIC.length).toString('hex'),
    });
  }
  const version = bytes.readUInt16BE(8);
  const flags = bytes.readUInt16BE(10);
  if (!READABLE_VERSIONS.includes(version as ContainerVersion)) {
    throw new ContainerMagicError(`container version ${version}`, 8, {
      expected: `version ${READABLE_VERSIONS.join(' or ')}`,
      actual: version,
    });
  }
  if (flags !== 0) {
    throw new ContainerMagicError(`preamble flags 0x${flags.toString(16)}`, 10, { expected: 'flags 0', actual: flags });
  }
  return version as ContainerVersion;
}

/**
 * Decodes and checks one frame header found at `offset`, where frame number `expected` belongs:
 * its checksum, number, kind (HEADER exactly at 0), codec, flags and lengths.
 */
export function checkFrameHeader(bytes: Buffer, expected: number, offset: number): FrameHeader {
  const { header, valid } = decodeFrameHeader(bytes);
  const ref: FrameRef = { frame: expected, offset };
  if (!valid) throw new CorruptFrameError('frame header fails its checksum', ref, { expected: 'an intact 28-byte frame header' });
  const named: FrameRef = { ...ref, kind: frameKindName(header.kind) };
  if (header.number !== expected) {
    throw new FrameOrderError(`found frame number ${header.number}`, named, {
      expected: `frame ${expected} (frames are numbered in file order: one is missing, repeated or moved)`,
      actual: header.number,
    });
  }
  if (header.kind < FrameKind.HEADER || header.kind > FrameKind.END) {
    throw new CorruptFrameError(`unknown frame kind ${header.kind}`, named, { expected: 'kind 1..5', actual: header.kind });
  }
  if ((expected === 0) !== (header.kind === FrameKind.HEADER)) {
    throw new FrameOrderError(expected === 0 ? `the first frame is ${frameKindName(header.kind)}` : 'a second HEADER frame', named, {
      expected: expected === 0 ? 'a HEADER frame first' : 'one HEADER frame, at the start',
    });
  }
  if (codecById(header.codec) === undefined) {
    throw new CorruptFrameError(`unknown codec ${header.codec}`, named, { expected: 'codec 0..3', actual: header.codec });
  }
  if (header.flags !== 0) {
    throw new CorruptFrameError(`frame flags 0x${header.flags.toString(16)}`, named, { expected: 'flags 0', actual: header.flags });
  }
  if (header.rawLength > MAX_FRAME_BYTES || header.storedLength > MAX_FRAME_BYTES) {
    throw new CorruptFrameError(`frame of ${header.rawLength} raw / ${header.storedLength} stored bytes`, named, {
      expected: `at most ${MAX_FRAME_BYTES} bytes`,
    });
  }
  if (header.codec === CODEC_IDS.none && (header.rawLength !== header.storedLength || header.rawChecksum !== header.storedChecksum)) {
    throw new CorruptFrameError('uncompressed frame whose raw and stored lengths or checksums differ', named);
  }
  return header;
}
