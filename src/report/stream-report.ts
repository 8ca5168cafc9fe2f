/**
 * What `migstream inspect` reports: a pure consumer of records that counts what a stream
 * holds. Feed it every record with its encoded length; read `summary()`.
 *
 * Re-sends: every page record (normal, zero, XBZRLE, compressed) is a send of one page. Two
 * HBitmaps per RAMBlock, one bit per page, record which pages were sent ("seen") and which
 * were sent again ("resent"). A precopy pass over RAM sends each dirty page once and a ram
 * section never spans two passes (the dirty bitmap is synced between iterations, in
 * ram_save_pending), so a page sent more than once is a page sent in more than one iteration:
 * the guest dirtied it again after it was sent.
 */
import { isBlockSize } from '../block/block-size.js';
import { BLK_MIG_BLOCK_SIZE } from '../block/flags.js';
import type { BlockRecord } from '../block/records.js';
import { HBitmap, isAllZero } from '../native.js';
import type { RamBlockInfo, RamRecord } from '../ram/records.js';
import { ArgumentError } from '../stream/errors.js';
import { CommandName, type ConfigurationSubsection, type FramingRecord } from '../stream/records.js';

export interface RamCounts {
  /** Full pages (RAM_SAVE_FLAG_PAGE): QMP's ram.normal. */
  normal: number;
  /** Same-byte pages (RAM_SAVE_FLAG_ZERO): QMP's ram.duplicate. */
  zero: number;
  xbzrle: number;
  compressed: number;
  /** Bytes of the XBZRLE deltas and zlib payloads. */
  xbzrleBytes: number;
  compressedBytes: number;
  /** Full pages whose payload is all zero bytes: a 1-byte ZERO record would have done. */
  normalAllZero: number;
}

/** Which pages of a RAMBlock (or of all of them) were sent more than once. */
export interface RamResend {
  /** Distinct pages sent at least once. */
  pages: number;
  /** Distinct pages sent more than once (in more than one iteration). */
  resentPages: number;
  /** Page records beyond each page's first: all page records minus `pages`. */
  resends: number;
}

export interface RamIteration extends RamCounts {
  /** Position among the ram sections (0 = START). */
  index: number;
  kind: 'start' | 'part' | 'end';
  /** Encoded bytes of the section, header and footer included. */
  bytes: number;
  /** Page records of this iteration for pages already sent before. */
  resent: number;
}

export interface BlockDeviceCounts {
  name: string;
  dataChunks: number;
  zeroChunks: number;
  /** Payload bytes of data chunks. */
  bytes: number;
  /** Highest sector + chunk seen (at the stream's chunk size): a lower bound of the disk size. */
  extentBytes: number;
}

/** Where the block section's chunk size (mig-block-size) in a report came from. */
export type ChunkSizeSource = 'option' | 'stream' | 'default';

export interface DeviceSection {
  sectionId: number;
  idstr: string;
  instanceId: number;
  versionId: number;
  bytes: number;
}

export interface StreamSummary {
  totalBytes: number;
  version: number | null;
  machineType: string | null;
  configuration: readonly ConfigurationSubsection[];
  complete: boolean;
  sections: { start: number; part: number; end: number; full: number };
  ram: {
    blocks: RamBlockInfo[];
    totals: RamCounts & { bytes: number; iterations: number };
    perBlock: Record<string, RamCounts>;
    iterations: RamIteration[];
    /** Re-sent pages, counted in pages of `pageSize` bytes. */
    resend: { pageSize: number; totals: RamResend; perBlock: Record<string, RamResend> };
  } | null;
  block: {
    sections: number;
    lastProgress: number | null;
    /** Bytes per chunk (mig-block-size): QEMU's 1 MiB, or a patched build's 4 KiB to 16 MiB. */
    chunkSize: number;
    /**
     * 'option': given to the decoder; 'stream': found from the stream (the length of its data
     * chunks, which the decoder settled at the first one); 'default': no data chunk and none
     * given, QEMU's 1 MiB assumed (zero chunks carry no data to tell).
     */
    chunkSizeSource: ChunkSizeSource;
    devices: BlockDeviceCounts[];
  } | null;
  devices: DeviceSection[];
  commands: { command: number; name: string; length: number }[];
  vmdesc: { bytes: number; devices: number | null; pageSize: number | null } | null;
}

const emptyCounts = (): RamCounts => ({
  normal: 0,
  zero: 0,
  xbzrle: 0,
  compressed: 0,
  xbzrleBytes: 0,
  compressedBytes: 0,
  normalAllZero: 0,
});

type AnyRecord = FramingRecord | RamRecord | BlockRecord;

/**
 * Pages tracked per RAMBlock: 2^35 (128 TiB of 4 KiB pages, 4 GiB of address space per bitmap,
 * committed only where pages were sent). Pages past it, which only a damaged or hostile
 * MEM_SIZE could declare, are not counted.
 */
const MAX_TRACKED_PAGES = 2 ** 35;

const isPageSize = (size: number): boolean => Number.isInteger(size) && size >= 512 && size <= 2 ** 30 && (size & (size - 1)) === 0;

/** The pages of one RAMBlock sent so far and those sent again; grows with the offsets seen. */
class SentPages {
  private readonly seen: HBitmap;
  private readonly resent: HBitmap;
  private records = 0;

  constructor(pages: number, pageSize: number) {
    this.seen = new HBitmap(pages, { granularity: pageSize });
    this.resent = new HBitmap(pages, { granularity: pageSize });
  }

  /** Grows to cover `pages` pages (a block declared larger, or a page past the known end). */
  cover(pages: number): void {
    if (pages <= this.seen.size || this.seen.size === MAX_TRACKED_PAGES) return;
    const size = Math.min(MAX_TRACKED_PAGES, Math.max(pages, 2 * this.seen.size));
    this.seen.resize(size);
    this.resent.resize(size);
  }

  /** Counts a send of page `index`; true when the page had been sent before. */
  send(index: number): boolean {
    if (index >= MAX_TRACKED_PAGES) return false;
    this.cover(index + 1);
    this.records++;
    if (!this.seen.get(index)) {
      this.seen.set(index);
      return false;
    }
    if (!this.resent.get(index)) this.resent.set(index);
    return true;
  }

  summary(): RamResend {
    const pages = this.seen.count();
    return { pages, resentPages: this.resent.count(), resends: this.records - pages };
  }
}

export interface StreamReportOptions {
  /** TARGET_PAGE_SIZE until a configuration section announces target-page-bits (default 4096). */
  pageSize?: number;
  /** The block chunk size the decoder was given (mig-block-size); else the data chunks' length. */
  blockSize?: number;
}

export class StreamReport {
  private totalBytes = 0;
  private version: number | null = null;
  private machineType: string | null = null;
  private configuration: readonly ConfigurationSubsection[] = [];
  private complete = false;
  private readonly sections = { start: 0, part: 0, end: 0, full: 0 };
  private readonly sectionNames = new Map<number, string>();
  private readonly fullSections = new Map<number, DeviceSection>();
  private ramBlocks: RamBlockInfo[] = [];
  private readonly ramIterations: RamIteration[] = [];
  private readonly ramPerBlock = new Map<string, RamCounts>();
  private currentRam: RamIteration | undefined;
  private currentDevice: DeviceSection | undefined;
  private blockSections = 0;
  private blockProgress: number | null = null;
  private readonly blockDevices = new Map<string, BlockDeviceCounts>();
  /** Per device, the highest sector of a zero chunk: its extent needs the chunk size. */
  private readonly zeroSectors = new Map<string, number>();
  private readonly givenChunkSize: number | undefined;
  private dataChunkSize: number | undefined;
  private readonly commands: { command: number; name: string; length: number }[] = [];
  private vmdesc: StreamSummary['vmdesc'] = null;
  private sawRam = false;
  private pageSize: number;
  private readonly sent = new Map<string, SentPages>();

  constructor(options: StreamReportOptions = {}) {
    const pageSize = options.pageSize ?? 4096;
    if (!isPageSize(pageSize)) {
      throw new ArgumentError(`StreamReport: pageSize must be a power of two in 512..2^30, got ${String(pageSize)}`);
    }
    this.pageSize = pageSize;
    if (options.blockSize !== undefined && !isBlockSize(options.blockSize)) {
      throw new ArgumentError(`StreamReport: blockSize must be a power of two from 4 KiB to 16 MiB, got ${String(options.blockSize)}`);
    }
    this.givenChunkSize = options.blockSize;
  }

  /** Counts one record; `bytes` is its encoded length. */
  add(record: AnyRecord, bytes: number): void {
    this.totalBytes += bytes;
    if (this.currentRam !== undefined) this.currentRam.bytes += bytes;
    if (this.currentDevice !== undefined) this.currentDevice.bytes += bytes;
    switch (record.type) {
      case 'header':
        this.version = record.version;
        break;
      case 'configuration':
        this.machineType = record.machineType;
        this.configuration = record.subsections;
        for (const sub of record.subsections) {
          // An absurd value leaves the page size as it was: the counts stay usable.
          if (sub.name === 'configuration/target-page-bits' && isPageSize(2 ** sub.targetPageBits)) {
            this.pageSize = 2 ** sub.targetPageBits;
          }
        }
        break;
      case 'section-start':
        this.sections[record.kind]++;
        this.sectionNames.set(record.sectionId, record.idstr);
        this.openSection(record.idstr, record.kind, bytes);
        if (!this.isBodyCodec(record.idstr)) {
          this.currentDevice = {
            sectionId: record.sectionId,
            idstr: record.idstr,
            instanceId: record.instanceId,
            versionId: record.versionId,
            bytes,
          };
        }
        break;
      case 'section-resume': {
        this.sections[record.kind]++;
        this.openSection(record.idstr, record.kind, bytes);
        const started = this.fullSections.get(record.sectionId);
        if (started !== undefined) this.currentDevice = { ...started, bytes };
        break;
      }
      case 'section-footer':
        if (this.currentDevice !== undefined) {
          const existing = this.fullSections.get(this.currentDevice.sectionId);
          if (existing === undefined || existing === this.currentDevice) {
            this.fullSections.set(this.currentDevice.sectionId, this.currentDevice);
          } else {
            existing.bytes += this.currentDevice.bytes;
          }
        }
        this.currentRam = undefined;
        this.currentDevice = undefined;
        break;
      case 'command':
        this.commands.push({ command: record.command, name: CommandName[record.command] ?? 'UNKNOWN', length: record.data.length });
        break;
      case 'eof':
        this.complete = true;
        break;
      case 'vmdesc':
        this.vmdesc = describeVmdesc(record.json);
        break;
      case 'ram-mem-size':
        this.ramBlocks = record.blocks.map((block) => ({ ...block }));
        for (const { idstr, usedLength } of record.blocks) this.sentPages(idstr).cover(Math.ceil(usedLength / this.pageSize));
        break;
      case 'ram-page':
        this.countRam(record.block, record.offset, 'normal', 0, 0, isAllZero(record.data));
        break;
      case 'ram-zero':
        this.countRam(record.block, record.offset, 'zero', 0, 0, false);
        break;
      case 'ram-xbzrle':
        this.countRam(record.block, record.offset, 'xbzrle', record.data.length, 0, false);
        break;
      case 'ram-compressed':
        this.countRam(record.block, record.offset, 'compressed', 0, record.data.length, false);
        break;
      case 'block-data':
        this.countBlock(record.device, record.sector, record.data.length, false);
        break;
      case 'block-zero':
        this.countBlock(record.device, record.sector, 0, true);
        break;
      case 'block-progress':
        this.blockProgress = record.percent;
        break;
      default:
        break;
    }
  }

  private isBodyCodec(idstr: string): boolean {
    return idstr === 'ram' || idstr === 'block';
  }

  private openSection(idstr: string, kind: 'start' | 'part' | 'end' | 'full', bytes: number): void {
    if (idstr === 'ram') {
      this.sawRam = true;
      this.currentRam = { index: this.ramIterations.length, kind: kind === 'full' ? 'start' : kind, bytes, resent: 0, ...emptyCounts() };
      this.ramIterations.push(this.currentRam);
    } else if (idstr === 'block') {
      this.blockSections++;
    }
  }

  private sentPages(block: string): SentPages {
    let sent = this.sent.get(block);
    if (sent === undefined) {
      sent = new SentPages(0, this.pageSize);
      this.sent.set(block, sent);
    }
    return sent;
  }

  private countRam(block: string, offset: number, kind: 'normal' | 'zero' | 'xbzrle' | 'compressed', xbzrleBytes: number, compressedBytes: number, allZero: boolean): void {
    let perBlock = this.ramPerBlock.get(block);
    if (perBlock === undefined) {
      perBlock = emptyCounts();
      this.ramPerBlock.set(block, perBlock);
    }
    const again = this.sentPages(block).send(Math.floor(offset / this.pageSize));
    if (again && this.currentRam !== undefined) this.currentRam.resent++;
    for (const counts of this.currentRam === undefined ? [perBlock] : [perBlock, this.currentRam]) {
      counts[kind]++;
      counts.xbzrleBytes += xbzrleBytes;
      counts.compressedBytes += compressedBytes;
      if (allZero) counts.normalAllZero++;
    }
  }

  private countBlock(name: string, sector: number, bytes: number, zero: boolean): void {
    let device = this.blockDevices.get(name);
    if (device === undefined) {
      device = { name, dataChunks: 0, zeroChunks: 0, bytes: 0, extentBytes: 0 };
      this.blockDevices.set(name, device);
    }
    if (zero) device.zeroChunks++;
    else device.dataChunks++;
    device.bytes += bytes;
    if (zero) {
      this.zeroSectors.set(name, Math.max(this.zeroSectors.get(name) ?? 0, sector));
    } else {
      this.dataChunkSize ??= bytes;
      device.extentBytes = Math.max(device.extentBytes, sector * 512 + bytes);
    }
  }

  /** The chunk size and where it came from (see StreamSummary's block.chunkSizeSource). */
  private chunkSize(): { chunkSize: number; chunkSizeSource: ChunkSizeSource } {
    if (this.givenChunkSize !== undefined) return { chunkSize: this.givenChunkSize, chunkSizeSource: 'option' };
    if (this.dataChunkSize !== undefined) return { chunkSize: this.dataChunkSize, chunkSizeSource: 'stream' };
    return { chunkSize: BLK_MIG_BLOCK_SIZE, chunkSizeSource: 'default' };
  }

  private blockSummary(): NonNullable<StreamSummary['block']> {
    const size = this.chunkSize();
    const devices = [...this.blockDevices.values()].map((device) => {
      const zero = this.zeroSectors.get(device.name);
      const extentBytes = zero === undefined ? device.extentBytes : Math.max(device.extentBytes, zero * 512 + size.chunkSize);
      return { ...device, extentBytes };
    });
    return { sections: this.blockSections, lastProgress: this.blockProgress, ...size, devices };
  }

  summary(): StreamSummary {
    const totals = { ...emptyCounts(), bytes: 0, iterations: this.ramIterations.length };
    for (const iteration of this.ramIterations) {
      totals.normal += iteration.normal;
      totals.zero += iteration.zero;
      totals.xbzrle += iteration.xbzrle;
      totals.compressed += iteration.compressed;
      totals.xbzrleBytes += iteration.xbzrleBytes;
      totals.compressedBytes += iteration.compressedBytes;
      totals.normalAllZero += iteration.normalAllZero;
      totals.bytes += iteration.bytes;
    }
    const resendPerBlock: Record<string, RamResend> = {};
    const resendTotals: RamResend = { pages: 0, resentPages: 0, resends: 0 };
    for (const [block, sent] of this.sent) {
      const counts = sent.summary();
      resendPerBlock[block] = counts;
      resendTotals.pages += counts.pages;
      resendTotals.resentPages += counts.resentPages;
      resendTotals.resends += counts.resends;
    }
    return {
      totalBytes: this.totalBytes,
      version: this.version,
      machineType: this.machineType,
      configuration: this.configuration,
      complete: this.complete,
      sections: { ...this.sections },
      ram: this.sawRam
        ? {
            blocks: this.ramBlocks,
            totals,
            perBlock: Object.fromEntries(this.ramPerBlock),
            iterations: this.ramIterations,
            resend: { pageSize: this.pageSize, totals: resendTotals, perBlock: resendPerBlock },
          }
        : null,
      block: this.blockSections > 0 ? this.blockSummary() : null,
      devices: [...this.fullSections.values()].filter((d) => !this.isBodyCodec(d.idstr)),
      commands: this.commands,
      vmdesc: this.vmdesc,
    };
  }
}

function describeVmdesc(json: Buffer): NonNullable<StreamSummary['vmdesc']> {
  try {
    const parsed = JSON.parse(json.toString('utf8')) as { devices?: unknown[]; page_size?: number };
    return {
      bytes: json.length,
      devices: Array.isArray(parsed.devices) ? parsed.devices.length : null,
      pageSize: typeof parsed.page_size === 'number' ? parsed.page_size : null,
    };
  } catch {
    return { bytes: json.length, devices: null, pageSize: null };
  }
}
