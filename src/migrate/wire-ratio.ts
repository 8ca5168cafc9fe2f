/**
 * How much `send -c CODEC` will shrink a guest's stream, estimated from a sample of its RAM
 * before the migration starts (probe.ts reads the sample; predict.ts uses the ratios).
 *
 * The sample is laid out as QEMU writes those pages (ram_save_page, save_zero_page): an 8-byte
 * header (page offset | flags, CONTINUE set) before each page, and a single 0 byte instead of
 * a zero page. Normal pages and zero-page records are compressed apart, in frames of send's
 * size, because they play different parts: the first pass carries both, every later pass only
 * re-sent pages, which are normal pages (a guest that dirties a page rarely leaves it zero).
 */
import { compressBytes, type CodecId } from '../codecs/registry.js';
import { ArgumentError } from '../stream/errors.js';

/** RAM_SAVE_FLAG_ZERO, RAM_SAVE_FLAG_PAGE and RAM_SAVE_FLAG_CONTINUE (migration/ram.c). */
const FLAG_ZERO = 0x02;
const FLAG_PAGE = 0x08;
const FLAG_CONTINUE = 0x20;
const HEADER_BYTES = 8;

export interface WireRatios {
  /** Wire bytes ÷ stream bytes over normal pages and zero-page records together (first pass). */
  firstPass: number;
  /** Wire bytes ÷ stream bytes over normal pages only (re-sent pages). */
  normalPages: number;
  /** Stream bytes the estimate rests on. */
  sampledStreamBytes: number;
}

export interface WireRatioOptions {
  codec: CodecId;
  level: number;
  /** send's frame size in bytes: each frame is compressed on its own. */
  frameBytes: number;
  pageSize: number;
}

/** Collects sampled pages as stream records and compresses them frame by frame. */
export class WireRatioSampler {
  private readonly normal: FrameAccumulator;
  private readonly zero: FrameAccumulator;
  private offset = 0;

  constructor(private readonly options: WireRatioOptions) {
    if (!(Number.isInteger(options.frameBytes) && options.frameBytes >= options.pageSize + HEADER_BYTES)) {
      throw new ArgumentError(`WireRatioSampler: frameBytes must hold at least one page record, got ${options.frameBytes}`);
    }
    this.normal = new FrameAccumulator(options);
    this.zero = new FrameAccumulator(options);
  }

  /** One sampled page; `isZero` as the addon's zero scan found it. */
  async addPage(page: Uint8Array, isZero: boolean): Promise<void> {
    if (page.length !== this.options.pageSize) throw new ArgumentError(`WireRatioSampler.addPage: a page is ${this.options.pageSize} bytes, got ${page.length}`);
    const header = BigInt(this.offset) | BigInt(FLAG_CONTINUE | (isZero ? FLAG_ZERO : FLAG_PAGE));
    this.offset += this.options.pageSize;
    if (isZero) await this.zero.add(header, ZERO_BYTE);
    else await this.normal.add(header, page);
  }

  async finish(): Promise<WireRatios> {
    await this.normal.flush();
    await this.zero.flush();
    const stream = this.normal.rawBytes + this.zero.rawBytes;
    const ratio = (wire: number, raw: number): number => (raw === 0 ? 1 : wire / raw);
    return {
      firstPass: ratio(this.normal.wireBytes + this.zero.wireBytes, stream),
      // No normal page in the sample: take the codec at its word for nothing (1).
      normalPages: ratio(this.normal.wireBytes, this.normal.rawBytes),
      sampledStreamBytes: stream,
    };
  }
}

const ZERO_BYTE = new Uint8Array(1);

class FrameAccumulator {
  rawBytes = 0;
  wireBytes = 0;
  private readonly frame: Buffer;
  private filled = 0;

  constructor(private readonly options: WireRatioOptions) {
    this.frame = Buffer.alloc(options.frameBytes);
  }

  /** One record: its be64 header, then its body. */
  async add(header: bigint, body: Uint8Array): Promise<void> {
    if (this.filled + HEADER_BYTES + body.length > this.frame.length) await this.flush();
    this.frame.writeBigUInt64BE(header, this.filled);
    this.frame.set(body, this.filled + HEADER_BYTES);
    this.filled += HEADER_BYTES + body.length;
  }

  async flush(): Promise<void> {
    if (this.filled === 0) return;
    const raw = this.frame.subarray(0, this.filled);
    const packed = await compressBytes(this.options.codec, this.options.level, raw);
    // send stores a frame raw when the codec would make it larger.
    this.wireBytes += Math.min(packed.length, raw.length);
    this.rawBytes += raw.length;
    this.filled = 0;
  }
}
