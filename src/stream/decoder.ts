/**
 * Push-based decoder of a whole migration stream (the framing of migration/savevm.c:
 * qemu_loadvm_state and qemu_loadvm_state_main).
 *
 *   const decoder = new StreamDecoder(codecs);
 *   for (const chunk of chunks) handle(decoder.push(chunk));
 *   handle(decoder.end());
 *
 * `push` accepts chunks of any size and returns the records completed by it. A record is read
 * whole or not at all: when its bytes are incomplete the reader throws NEED_MORE, the cursor is
 * rewound to the record start, and the next push retries. `end` checks that the stream stopped
 * at a clean boundary. After an error the decoder is unusable and rethrows it.
 */
import { configurationParameters, readConfiguration } from './configuration.js';
import { BadMagicError, DecodeError, FramingError, LimitExceededError, TruncatedStreamError, UnknownFlagError, hex, type SectionRef } from './errors.js';
import { FooterScanner, type BoundaryRules } from './footer-scanner.js';
import { ByteReader, NEED_MORE } from './reader.js';
import { FILE_MAGIC, FILE_VERSION, MIG_CMD_PACKAGED, SectionType, type FramingRecord } from './records.js';
import type { BaseRecord, SectionBodyDecoder, SectionCodec, SectionContext, SectionPhase, StreamParameters } from './section-codec.js';

/** The first four bytes of a migstream container ("\x89MSZ", src/container/format.ts): a hint, not a format this layer reads. */
const CONTAINER_MAGIC_START = 0x894d535a;

export interface DecoderOptions {
  /** Target page size when the configuration does not announce one (x86: 4096). */
  pageSize?: number;
  /** Whether sections end with a footer (true for every machine type since QEMU 2.4). */
  sectionFooters?: boolean;
  /** Largest device-state section body accepted (bounds memory). Default 64 MiB. */
  maxDeviceStateBytes?: number;
  /** Largest vmdesc JSON accepted. Default 64 MiB. */
  maxVmdescBytes?: number;
  /**
   * The `block` section's chunk size (mig-block-size: a power of two from 4 KiB to 16 MiB;
   * QEMU's is 1 MiB), checked by the block codec at the first data chunk. Omitted: the block
   * codec finds it from the stream (`parameters.blockSize` then says which).
   */
  blockSize?: number;
}

const enum State {
  Header,
  Configuration,
  Top,
  Body,
  OpaqueBody,
  Footer,
  Packaged,
  AfterEof,
  Done,
}

interface SectionInfo {
  readonly ref: SectionRef;
  readonly instanceId: number;
  readonly versionId: number;
}

/** How many input bytes an opaque body scan takes per step. */
const SCAN_WINDOW = 64 * 1024;
/** Largest piece of a MIG_CMD_PACKAGED payload emitted as one record. */
const PACKAGED_PIECE = 1024 * 1024;

export class StreamDecoder<B extends BaseRecord = never> {
  private readonly reader = new ByteReader();
  private readonly codecs = new Map<string, SectionCodec<B>>();
  private readonly bodyDecoders = new Map<string, SectionBodyDecoder<B>>();
  private readonly sections = new Map<number, SectionInfo>();
  private readonly params: StreamParameters;
  private readonly footers: boolean;
  private readonly maxDeviceStateBytes: number;
  private readonly rules: BoundaryRules;

  private state = State.Header;
  private failure: unknown;
  private section: SectionInfo | undefined;
  private context: SectionContext | undefined;
  private bodyDecoder: SectionBodyDecoder<B> | undefined;
  private scanner: FooterScanner | undefined;
  private scanStart = 0;
  private packagedLeft = 0;
  /** End offsets of the records of the last push() or end() (recordEnds). */
  private ends: number[] = [];

  constructor(codecs: readonly SectionCodec<B>[] = [], options: DecoderOptions = {}) {
    for (const codec of codecs) this.codecs.set(codec.idstr, codec);
    this.footers = options.sectionFooters ?? true;
    this.params = { pageSize: options.pageSize ?? 4096, capabilities: [], sectionFooters: this.footers };
    if (options.blockSize !== undefined) {
      this.params.blockSize = options.blockSize;
      this.params.blockSizeSource = 'option';
    }
    this.maxDeviceStateBytes = options.maxDeviceStateBytes ?? 64 * 1024 * 1024;
    const maxVmdescBytes = options.maxVmdescBytes ?? 64 * 1024 * 1024;
    this.rules = { isKnownSection: (id) => this.sections.has(id), maxVmdescBytes };
  }

  /** Bytes consumed so far (records completed). */
  get offset(): number {
    return this.reader.offset;
  }

  /** Stream parameters learnt so far (page size, capabilities, block chunk size). */
  get parameters(): Readonly<StreamParameters> {
    return this.params;
  }

  /** True once EOF has been read: the rest is only the optional vmdesc. */
  get complete(): boolean {
    return this.state === State.AfterEof || this.state === State.Done;
  }

  /**
   * Where each record the last push() or end() returned ends in the stream (index for index;
   * a record starts where the one before it ended, the first at 0): its byte span, reported so
   * that no caller recomputes a record's length.
   */
  get recordEnds(): readonly number[] {
    return this.ends;
  }

  push(chunk: Buffer): (FramingRecord | B)[] {
    if (this.failure !== undefined) throw this.failure;
    this.reader.push(chunk);
    this.ends = [];
    const out: (FramingRecord | B)[] = [];
    try {
      this.run(out);
    } catch (error) {
      if (error !== NEED_MORE) {
        this.failure = error;
        throw error;
      }
      this.reader.rewind();
    }
    this.reader.dropConsumed();
    return out;
  }

  /**
   * Stops referencing the memory of the chunks pushed so far (the unread tail of an incomplete
   * record is copied), so the caller can read the next input into the same buffer. Records
   * already returned still point into those chunks: finish with them first.
   */
  releaseInput(): void {
    this.reader.ownRetained();
  }

  /** Declares the input finished; throws TruncatedStreamError unless it ended cleanly. */
  end(): (FramingRecord | B)[] {
    if (this.failure !== undefined) throw this.failure;
    this.ends = [];
    const out: (FramingRecord | B)[] = [];
    if (this.state === State.OpaqueBody && this.reader.available === 0) {
      // The last device section may be followed by a bare EOF with no vmdesc.
      this.finishOpaqueBody(out, true);
      if ((this.state as State) === State.Top) {
        this.reader.mark();
        try {
          this.run(out);
        } catch (error) {
          if (error !== NEED_MORE) throw (this.failure = error);
          this.reader.rewind();
        }
      }
    }
    const clean = (this.state === State.AfterEof || this.state === State.Done) && this.reader.available === 0;
    if (!clean) {
      const offset = this.state === State.OpaqueBody ? this.scanStart : this.reader.offset;
      const { problem, expected } = this.whatEndMissed(offset);
      this.failure = new TruncatedStreamError({ offset, section: this.section?.ref, context: this.describeState(), expected }, problem);
      throw this.failure;
    }
    this.state = State.Done;
    return out;
  }

  /** What a stream that ends here got wrong and still owed, for TruncatedStreamError. */
  private whatEndMissed(offset: number): { problem: string; expected: string } {
    const held = this.reader.available;
    if (offset === 0 && held === 0 && this.state === State.Header) return { problem: 'the input is empty', expected: 'a QEMU file header (QEVM magic)' };
    if (held === 0) return { problem: 'stream ends between two records, before its end', expected: 'more records, then QEMU_VM_EOF' };
    return { problem: 'stream ends inside a record', expected: `the rest of the record begun by the last ${held} bytes` };
  }

  /** A record out, ending at `end` (by default where the reader's cursor is: after it). */
  private emit(out: (FramingRecord | B)[], record: FramingRecord | B, end = this.reader.offset): void {
    out.push(record);
    this.ends.push(end);
  }

  private describeState(): string {
    switch (this.state) {
      case State.Header:
        return 'file header';
      case State.Configuration:
        return 'configuration section';
      case State.Body:
        return `${this.section?.ref.name ?? 'section'} record`;
      case State.OpaqueBody:
        return 'device state';
      case State.Footer:
        return 'section footer';
      case State.Packaged:
        return 'packaged command data';
      case State.AfterEof:
        return 'vmdesc';
      default:
        return 'section header';
    }
  }

  private run(out: (FramingRecord | B)[]): void {
    const reader = this.reader;
    for (;;) {
      reader.mark();
      switch (this.state) {
        case State.Header:
          this.readHeader(out);
          break;
        case State.Configuration:
          if (reader.peekU8() === SectionType.CONFIGURATION) {
            reader.u8();
            const record = readConfiguration(reader);
            const announced = configurationParameters(record);
            if (announced.targetPageBits !== undefined) this.params.pageSize = 2 ** announced.targetPageBits;
            this.params.capabilities = announced.capabilities;
            this.emit(out, record);
          }
          this.state = State.Top;
          break;
        case State.Top:
          this.readTop(out);
          break;
        case State.Body: {
          const decoder = this.bodyDecoder!;
          const context = this.context!;
          for (;;) {
            reader.mark();
            const record = decoder.read(reader, context);
            this.emit(out, record);
            if (decoder.endsBody(record)) break;
          }
          this.state = this.footers ? State.Footer : State.Top;
          break;
        }
        case State.OpaqueBody:
          this.scanner!.append(reader.take(SCAN_WINDOW));
          reader.mark();
          this.finishOpaqueBody(out, false);
          if (this.state === State.OpaqueBody && reader.available === 0) throw NEED_MORE;
          break;
        case State.Footer:
          this.readFooter(out);
          break;
        case State.Packaged: {
          const take = Math.min(this.packagedLeft, PACKAGED_PIECE, reader.available);
          if (take === 0) throw NEED_MORE;
          this.emit(out, { type: 'packaged-data', data: reader.bytes(take) });
          this.packagedLeft -= take;
          if (this.packagedLeft === 0) this.state = State.Top;
          break;
        }
        case State.AfterEof:
          this.readVmdesc(out);
          break;
        case State.Done: {
          if (reader.available === 0) throw NEED_MORE;
          throw new FramingError('data after the end of the stream', {
            offset: reader.offset,
            context: 'end of stream',
            expected: 'nothing after the vmdesc',
            actual: hex(reader.peekU8()),
          });
        }
      }
    }
  }

  private readHeader(out: (FramingRecord | B)[]): void {
    const reader = this.reader;
    const magic = reader.u32();
    const version = reader.u32();
    if (magic !== FILE_MAGIC) {
      const hint = magic === CONTAINER_MAGIC_START ? ': this is a migstream container (run "migstream decompress" on it first)' : '';
      throw new BadMagicError(`wrong magic ${hex(magic)}${hint}`, {
        offset: 0,
        context: 'file header',
        expected: `${hex(FILE_MAGIC)} ("QEVM")`,
        actual: magic,
      });
    }
    if (version !== FILE_VERSION) {
      throw new BadMagicError(`unsupported stream version ${version}`, {
        offset: 4,
        context: 'file header',
        expected: `version ${FILE_VERSION}`,
        actual: version,
      });
    }
    this.emit(out, { type: 'header', version });
    this.state = State.Configuration;
  }

  private readTop(out: (FramingRecord | B)[]): void {
    const reader = this.reader;
    const type = reader.u8();
    switch (type) {
      case SectionType.START:
      case SectionType.FULL: {
        const sectionId = reader.u32();
        const idstr = reader.bytes(reader.u8()).toString('latin1');
        const instanceId = reader.u32();
        const versionId = reader.u32();
        const info: SectionInfo = { ref: { id: sectionId, name: idstr }, instanceId, versionId };
        this.sections.set(sectionId, info);
        const kind = type === SectionType.START ? 'start' : 'full';
        this.emit(out, { type: 'section-start', kind, sectionId, idstr, instanceId, versionId });
        this.enterBody(info, kind);
        return;
      }
      case SectionType.PART:
      case SectionType.END: {
        const sectionId = reader.u32();
        const info = this.sections.get(sectionId);
        if (info === undefined) {
          throw new FramingError(`section id ${sectionId} was never started`, {
            offset: reader.markOffset,
            context: 'section header',
            expected: 'the id of an earlier SECTION_START',
            actual: sectionId,
          });
        }
        const kind = type === SectionType.PART ? 'part' : 'end';
        this.emit(out, { type: 'section-resume', kind, sectionId, idstr: info.ref.name });
        this.enterBody(info, kind);
        return;
      }
      case SectionType.COMMAND: {
        const command = reader.u16();
        const data = reader.bytes(reader.u16());
        if (command === MIG_CMD_PACKAGED) {
          if (data.length !== 4) {
            throw new FramingError(`PACKAGED command with ${data.length} bytes of data`, {
              offset: reader.markOffset,
              context: 'command',
              expected: '4 bytes (be32 length)',
              actual: data.length,
            });
          }
          this.packagedLeft = data.readUInt32BE(0);
          if (this.packagedLeft > 0) this.state = State.Packaged;
        }
        this.emit(out, { type: 'command', command, data });
        return;
      }
      case SectionType.EOF:
        this.emit(out, { type: 'eof' });
        this.section = undefined;
        this.state = State.AfterEof;
        return;
      default:
        throw new UnknownFlagError(`unknown section type ${hex(type)}`, {
          offset: reader.markOffset,
          context: 'section header',
          expected: 'START, PART, END, FULL, COMMAND or EOF',
          actual: type,
        });
    }
  }

  private enterBody(info: SectionInfo, phase: SectionPhase): void {
    this.section = info;
    const codec = this.codecs.get(info.ref.name);
    if (codec === undefined) {
      this.scanner = new FooterScanner(info.ref.id);
      this.scanStart = this.reader.offset;
      this.state = State.OpaqueBody;
      if (!this.footers) {
        throw new FramingError(`section "${info.ref.name}" can only be framed by its footer`, {
          offset: this.reader.markOffset,
          section: info.ref,
          context: 'section header',
          expected: 'a stream with section footers',
        });
      }
      return;
    }
    let decoder = this.bodyDecoders.get(codec.idstr);
    if (decoder === undefined) {
      decoder = codec.newDecoder();
      this.bodyDecoders.set(codec.idstr, decoder);
    }
    this.bodyDecoder = decoder;
    this.context = { section: info.ref, versionId: info.versionId, phase, params: this.params };
    this.state = State.Body;
  }

  private finishOpaqueBody(out: (FramingRecord | B)[], atEnd: boolean): void {
    const scanner = this.scanner!;
    const info = this.section!;
    const found = scanner.find(this.rules, atEnd);
    if (found === null) {
      if (scanner.size > this.maxDeviceStateBytes) {
        throw new LimitExceededError(`no section footer within ${scanner.size} bytes`, {
          offset: this.scanStart,
          section: info.ref,
          context: 'device state',
          expected: `a footer 0x7e ${hex(info.ref.id)} within ${this.maxDeviceStateBytes} bytes`,
          actual: scanner.size,
        });
      }
      return;
    }
    // The scanner read past the footer: the body ends where the scan started plus its length,
    // and the footer (0x7e, be32 id) 5 bytes later.
    const bodyEnd = this.scanStart + found.body.length;
    this.emit(out, { type: 'device-state', sectionId: info.ref.id, idstr: info.ref.name, data: found.body }, bodyEnd);
    this.emit(out, { type: 'section-footer', sectionId: info.ref.id }, bodyEnd + 5);
    this.reader.unshift(found.rest);
    this.reader.mark();
    this.scanner = undefined;
    this.state = State.Top;
  }

  private readFooter(out: (FramingRecord | B)[]): void {
    const reader = this.reader;
    const info = this.section!;
    const mark = reader.u8();
    const sectionId = reader.u32();
    if (mark !== SectionType.FOOTER || sectionId !== info.ref.id) {
      throw new FramingError(mark !== SectionType.FOOTER ? `missing section footer (found byte ${hex(mark)})` : `footer closes section ${sectionId}`, {
        offset: reader.markOffset,
        section: info.ref,
        context: 'section footer',
        expected: `0x7e ${hex(info.ref.id)}`,
        actual: mark !== SectionType.FOOTER ? mark : sectionId,
      });
    }
    this.emit(out, { type: 'section-footer', sectionId });
    this.state = State.Top;
  }

  private readVmdesc(out: (FramingRecord | B)[]): void {
    const reader = this.reader;
    const type = reader.u8();
    if (type !== SectionType.VMDESCRIPTION) {
      throw new FramingError(`unexpected byte ${hex(type)} after EOF`, {
        offset: reader.markOffset,
        context: 'vmdesc',
        expected: 'QEMU_VM_VMDESCRIPTION (0x06) or the end of the stream',
        actual: type,
      });
    }
    const length = reader.u32();
    if (length > this.rules.maxVmdescBytes) {
      throw new LimitExceededError(`vmdesc length ${length} is past the limit`, {
        offset: reader.markOffset,
        context: 'vmdesc',
        expected: `at most ${this.rules.maxVmdescBytes} bytes`,
        actual: length,
      });
    }
    this.emit(out, { type: 'vmdesc', json: reader.bytes(length) });
    this.state = State.Done;
  }
}

export function isDecodeError(error: unknown): error is DecodeError {
  return error instanceof DecodeError;
}
