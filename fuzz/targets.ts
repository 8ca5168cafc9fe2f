/**
 * What the fuzzer feeds, and what each layer may answer. Every input must end in success or
 * in its layer's typed error; anything else (a TypeError, a RangeError, a hang, a success with
 * different bytes) is a failure the runner reports with the input to replay it.
 */
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createDecoder, encodeBuffer, encodedLength, type MigrationRecord } from '../src/codec.js';
import { CODEC_IDS, codecByName, compressBytes, decompressFrame, type CodecId } from '../src/codecs/registry.js';
import { Compressor, type CompressOptions } from '../src/compress/compressor.js';
import { ContainerReader } from '../src/container/reader.js';
import { Decompressor } from '../src/decompress/piped.js';
import { DirectDecompressor } from '../src/decompress/direct.js';
import { ContainerError } from '../src/container/errors.js';
import { WorkerPool } from '../src/workers/pool.js';
import { DeviceFieldCollector } from '../src/report/device-fields.js';
import { DecodeError } from '../src/stream/errors.js';
import { PeerAbortError, ProtocolError } from '../src/tls/errors.js';
import { admit, type SessionInfo } from '../src/tls/session.js';
import { FrameParser, FrameReader, FrameType, encodeAbort, encodeDataHeader, encodeEnd, encodeOpen, encodePing, type Frame } from '../src/tls/wire.js';
import { FIXTURES_DIR, META_FILE, type FixtureMeta } from '../test/fixtures/meta.js';
import { frameCodec } from '../src/tunnel/frame-codec.js';
import { TunnelSession } from '../src/tunnel/session.js';
import { TUNNEL_PROTOCOL_VERSION, TunnelFrameType, decodeTunnelFrame, encodeStream, encodeStreamDataHeader, encodeStreamEnd, encodeStreamReset, encodeWindow, type TunnelFrame } from '../src/tunnel/wire.js';
import { QmpConnectionError } from '../src/qemu/errors.js';
import { QmpLineSplitter, parseQmpLine } from '../src/qemu/qmp-wire.js';
import { SEED_FIXTURES, streamSeeds, type StreamSeed } from './corpus.js';
import { inChunks, startOffsets, type SeedInput } from './mutate.js';
import type { Random } from './random.js';
import { frameHeaderOffsets, relabel, reseal } from './reseal.js';

/**
 * Half the mutated containers are re-sealed (reseal.ts), half keep their broken checksums; one
 * in ten of the re-sealed ones also has a frame relabelled, as a forger would.
 */
function resealHalf(input: Buffer, random: Random): Buffer {
  if (!random.chance(0.5)) return input;
  const offsets = frameHeaderOffsets(input);
  const relabelled = offsets.length > 0 && random.chance(0.2) ? relabel(input, random.pick(offsets), 1 + random.below(5)) : input;
  return reseal(relabelled);
}

export type Outcome = 'accepted' | 'refused';

export interface TargetSeed extends SeedInput {
  /** For containers: the stream a successful decompression must give back. */
  readonly expected?: Buffer;
}

export interface Target {
  readonly name: string;
  /** What the layer is, for the report. */
  readonly layer: string;
  /** The layer's typed errors: a refusal must be one of these. */
  readonly refusal: string;
  isRefusal(error: unknown): boolean;
  seeds(): Promise<TargetSeed[]>;
  run(input: Buffer, chunks: readonly number[], seed: TargetSeed): Promise<Outcome>;
  /** Applied to a mutated input, e.g. to re-seal a container's checksums. */
  fixup?(input: Buffer, random: Random): Buffer;
  close?(): Promise<void>;
}

/** Thrown when an accepted input gives bytes other than it should: never a refusal. */
export class WrongOutputError extends Error {}

let streamSeedsOnce: Promise<StreamSeed[]> | undefined;
const loadStreamSeeds = (): Promise<StreamSeed[]> => (streamSeedsOnce ??= streamSeeds());

/** The stream decoder; an accepted stream must re-encode to its exact bytes. */
export const streamTarget: Target = {
  name: 'stream',
  layer: 'stream decoder (src/stream, ram and block codecs)',
  refusal: 'DecodeError',
  isRefusal: (error) => error instanceof DecodeError,
  seeds: loadStreamSeeds,
  async run(input, chunks) {
    const decoder = createDecoder();
    const records: MigrationRecord[] = [];
    // Each record's span (recordEnds) must be its encoding's length, the spans tiling the input.
    let start = 0;
    const spanned = (got: MigrationRecord[]): MigrationRecord[] => {
      got.forEach((record, i) => {
        const end = decoder.recordEnds[i]!;
        if (end - start !== encodedLength(record)) {
          throw new WrongOutputError(`record ${records.length + i} (${record.type}) spans ${start}..${end}, but encodes to ${encodedLength(record)} bytes`);
        }
        start = end;
      });
      return got;
    };
    for (const chunk of inChunks(input, chunks)) records.push(...spanned(decoder.push(chunk)));
    records.push(...spanned(decoder.end()));
    if (start !== input.length) throw new WrongOutputError(`the record spans end at ${start} of an accepted ${input.length}-byte stream`);
    const again = encodeBuffer(records);
    if (!again.equals(input)) throw new WrongOutputError(`accepted stream of ${input.length} bytes re-encodes to ${again.length} different bytes`);
    return 'accepted';
  },
};

/** A seed's device-state records (and section starts), for the vmdesc target. */
function deviceRecords(seed: StreamSeed): MigrationRecord[] {
  return seed.records.filter((r) => r.type === 'section-start' || r.type === 'device-state');
}

/** The vmdesc JSON against the seed's real device-state bodies (inspect --fields). */
export const vmdescTarget: Target = {
  name: 'vmdesc',
  layer: 'vmdesc parser and device-state field walk (src/stream/vmstate.ts)',
  refusal: 'a vmdesc problem (VmdescError) or a body that does not fit',
  isRefusal: () => false,
  async seeds() {
    return (await loadStreamSeeds()).map((seed) => {
      const vmdesc = seed.records.find((r) => r.type === 'vmdesc');
      const json = vmdesc?.type === 'vmdesc' ? vmdesc.json : Buffer.from('{}');
      // Boundaries at every JSON token start, so values get replaced whole.
      const boundaries: number[] = [];
      for (let i = 0; i < json.length; i++) if (json[i] === 0x3a /* : */ || json[i] === 0x2c /* , */) boundaries.push(i + 1);
      return { name: seed.name, bytes: json, boundaries, records: deviceRecords(seed) } as TargetSeed & { records: MigrationRecord[] };
    });
  },
  async run(input, _chunks, seed) {
    const collector = new DeviceFieldCollector();
    for (const record of (seed as TargetSeed & { records: MigrationRecord[] }).records) collector.add(record);
    collector.add({ type: 'vmdesc', json: input } as MigrationRecord);
    const devices = collector.result();
    if (devices === null) return 'refused';
    return devices.every((d) => d.exact) ? 'accepted' : 'refused';
  },
};

/** The smallest frames (64 KiB), so a seed has several; dedup on except for zlib. */
const CONTAINER_VARIANTS: readonly CompressOptions[] = [
  { codec: 'lz4', frameBytes: 64 * 1024 },
  { codec: 'zstd', frameBytes: 64 * 1024 },
  { codec: 'zlib', frameBytes: 64 * 1024, dedupWindowPages: 0 },
  { codec: 'none', frameBytes: 64 * 1024 },
];

let containerSeedsOnce: Promise<TargetSeed[]> | undefined;

/** Containers of the stream seeds, each codec once, with frame starts as boundaries. */
function containerSeeds(): Promise<TargetSeed[]> {
  containerSeedsOnce ??= (async () => {
    const out: TargetSeed[] = [];
    const streams = await loadStreamSeeds();
    for (const [i, stream] of streams.entries()) {
      const variant = CONTAINER_VARIANTS[i % CONTAINER_VARIANTS.length]!;
      const compressor = new Compressor({ threads: 1, ...variant });
      const parts: Buffer[] = [];
      for await (const part of compressor.compress([stream.bytes])) parts.push(part);
      const container = Buffer.concat(parts);
      out.push({ name: `${stream.name}.${variant.codec}`, bytes: container, boundaries: frameStarts(container), expected: stream.bytes });
    }
    return out;
  })();
  return containerSeedsOnce;
}

function frameStarts(container: Buffer): number[] {
  const reader = new ContainerReader();
  return [0, ...reader.push(container).map((frame) => frame.offset)];
}

export const containerTarget: Target = {
  name: 'container',
  layer: 'container reader (src/container/reader.ts)',
  refusal: 'ContainerError',
  isRefusal: (error) => error instanceof ContainerError,
  seeds: containerSeeds,
  fixup: resealHalf,
  async run(input, chunks) {
    const reader = new ContainerReader();
    for (const chunk of inChunks(input, chunks)) reader.push(chunk);
    reader.end();
    return 'accepted';
  },
};

let sharedPool: WorkerPool | undefined;

/** The piped decompressor (stdin, pipes) on a shared pool of two workers: its output and error. */
async function piped(input: Buffer, chunks: readonly number[]): Promise<{ output: Buffer; error?: unknown }> {
  sharedPool ??= new WorkerPool(2);
  const out: Buffer[] = [];
  try {
    for await (const piece of new Decompressor({ pool: sharedPool }).decompress(inChunks(input, chunks))) out.push(piece);
  } catch (error) {
    return { output: Buffer.concat(out), error };
  }
  return { output: Buffer.concat(out) };
}

/** Direct mode (a container file into a descriptor), through files in `scratch`. */
async function direct(input: Buffer, scratch: string): Promise<{ output: Buffer; error?: unknown }> {
  const inPath = join(scratch, 'fuzz-in.msz');
  const outPath = join(scratch, 'fuzz-out.mig');
  const inFd = openSync(inPath, 'w+');
  const outFd = openSync(outPath, 'w+');
  let error: unknown;
  try {
    ftruncateSync(inFd, 0);
    writeSync(inFd, input, 0, input.length, 0);
    await new DirectDecompressor().runFd(inFd, outFd);
  } catch (caught) {
    error = caught;
  } finally {
    closeSync(inFd);
    closeSync(outFd);
  }
  return { output: readFileSync(outPath), ...(error === undefined ? {} : { error }) };
}

const codeOf = (error: unknown): string => (error === undefined ? 'success' : ((error as { code?: string }).code ?? (error as Error).name));

/**
 * Both decompression paths on the same input: piped (chunked as the input says) and direct
 * (the file). Each must give the stream back or refuse without letting out its end, and both
 * must come to the same verdict: the first problem in file order.
 */
export function decompressTarget(scratch: string): Target {
  return {
    name: 'decompress',
    layer: 'piped and direct decompressors (src/decompress: piped.ts, direct.ts, container-walk.ts)',
    refusal: 'ContainerError',
    isRefusal: (error) => error instanceof ContainerError,
    seeds: containerSeeds,
    fixup: resealHalf,
    async run(input, chunks, seed) {
      const expected = seed.expected!;
      const results = [await piped(input, chunks), await direct(input, scratch)];
      for (const [i, { output, error }] of results.entries()) {
        const path = i === 0 ? 'piped' : 'direct';
        if (error === undefined && !output.equals(expected)) {
          throw new WrongOutputError(`${path}: accepted container decompresses to ${output.length} bytes other than the stream's ${expected.length}`);
        }
        if (error !== undefined && output.includes(expected.subarray(-256))) {
          // QEMU would have loaded the whole stream and resumed before the exit 1.
          throw new WrongOutputError(`${path}: refused after writing the stream's end (${output.length} bytes written)`);
        }
      }
      const [pipedCode, directCode] = results.map((r) => codeOf(r.error));
      if (pipedCode !== directCode) throw new WrongOutputError(`the readers disagree: piped ${pipedCode}, direct ${directCode}`);
      if (results[0]!.error !== undefined) throw results[0]!.error;
      return 'accepted';
    },
    async close() {
      await sharedPool?.close();
      sharedPool = undefined;
    },
  };
}

const SESSION_ID = Buffer.from('00112233445566778899aabbccddeeff', 'hex');

/** One channel's bytes as the sender writes them: OPEN, DATA frames of a stream seed, END. */
async function sessionBytes(stream: Buffer, codec: CodecId): Promise<{ bytes: Buffer; boundaries: number[] }> {
  const frames: Buffer[] = [encodeOpen({ sessionId: SESSION_ID, channels: 2, index: 0, codec }), encodePing()];
  const frameRaw = 64 * 1024;
  for (let at = 0, seq = 0; at < stream.length; at += frameRaw, seq++) {
    const raw = stream.subarray(at, at + frameRaw);
    const payload = codec === CODEC_IDS.none ? raw : await compressBytes(codec, 1, raw);
    frames.push(Buffer.concat([encodeDataHeader(seq, raw.length, codec, payload.length), payload]));
  }
  frames.push(encodeDataHeader(1 << 20, 0, CODEC_IDS.none, 0), encodeEnd({ frames: 7, bytes: stream.length, digest: 0x1234n }), encodeAbort('fuzz'));
  return { bytes: Buffer.concat(frames), boundaries: startOffsets(frames.map((frame) => frame.length)) };
}

/**
 * The transport's wire: the push parser (FrameParser) and the socket parser (FrameReader) over
 * the same chunks must give the same frames or the same refusal; OPEN frames go through the
 * receiver's admission rules, DATA payloads through its bounded decompression.
 */
export const wireTarget: Target = {
  name: 'wire',
  layer: 'transport wire, admission and DATA decompression (src/tls/wire.ts, session.ts)',
  refusal: 'ProtocolError',
  isRefusal: (error) => error instanceof ProtocolError,
  async seeds() {
    const streams = await loadStreamSeeds();
    const codecs: CodecId[] = [CODEC_IDS.lz4, CODEC_IDS.zstd, CODEC_IDS.zlib, CODEC_IDS.none];
    const out: TargetSeed[] = [];
    for (const [i, stream] of streams.entries()) {
      // The first 256 KiB: the header, configuration and device state of a real stream.
      const { bytes, boundaries } = await sessionBytes(stream.bytes.subarray(0, 256 * 1024), codecs[i % codecs.length]!);
      out.push({ name: `${stream.name}.wire`, bytes, boundaries });
    }
    return out;
  },
  async run(input, chunks) {
    const pushed = parseWithParser(input, chunks);
    const read = parseWithReader(input, chunks);
    if (pushed.error !== read.error) throw new WrongOutputError(`FrameParser and FrameReader disagree: ${pushed.error ?? 'ok'} / ${read.error ?? 'ok'}`);
    // Before a refusal the push parser drops the frames of the chunk it failed in; the channel
    // fails either way. Without one, both must give every frame.
    const agree = pushed.error === undefined ? pushed.frames.length === read.frames.length : pushed.frames.length <= read.frames.length;
    if (!agree) throw new WrongOutputError(`FrameParser gave ${pushed.frames.length} frames, FrameReader ${read.frames.length}`);
    let session: SessionInfo | undefined;
    for (const frame of pushed.frames) {
      if (frame.type === FrameType.OPEN) {
        const verdict = admit(session, frame);
        if ('session' in verdict) session = verdict.session;
      } else if (frame.type === FrameType.DATA && frame.codec !== CODEC_IDS.none) {
        try {
          await decompressFrame(frame.codec as CodecId, frame.payload, frame.rawLength);
        } catch (error) {
          // recv-worker turns any codec failure into a ProtocolError naming the frame.
          if (error instanceof TypeError || error instanceof RangeError) throw error;
          throw new ProtocolError(`frame ${frame.seq} does not decompress: ${(error as Error).message}`);
        }
      }
    }
    if (pushed.error !== undefined) throw pushed.thrown;
    return 'accepted';
  },
};

interface Parsed {
  frames: Frame[];
  error?: string;
  thrown?: unknown;
}

function parseWithParser(input: Buffer, chunks: readonly number[]): Parsed {
  const parser = new FrameParser();
  const frames: Frame[] = [];
  try {
    for (const chunk of inChunks(input, chunks)) frames.push(...parser.push(chunk));
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    return { frames, error: error.message, thrown: error };
  }
  return { frames };
}

/** As a socket reads: into target(), as many bytes as the chunk and the target allow. */
function parseWithReader(input: Buffer, chunks: readonly number[]): Parsed {
  const reader = new FrameReader();
  const frames: Frame[] = [];
  try {
    for (const chunk of inChunks(input, chunks)) {
      for (let at = 0; at < chunk.length;) {
        const target = reader.target();
        const n = Math.min(target.length, chunk.length - at);
        chunk.copy(target, 0, at, at + n);
        at += n;
        frames.push(...reader.filled(n));
      }
    }
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    return { frames, error: error.message, thrown: error };
  }
  return { frames };
}

/**
 * QMP transcripts as QEMU writes them (CRLF lines), around the real query-migrate answer each
 * fixture recorded from its source QEMU.
 */
async function qmpSeeds(): Promise<TargetSeed[]> {
  const seeds: TargetSeed[] = [];
  for (const fixture of SEED_FIXTURES) {
    const meta = JSON.parse(readFileSync(join(FIXTURES_DIR, fixture, META_FILE), 'utf8')) as FixtureMeta;
    const [major, minor, micro] = meta.qemuVersion.split(/[ .]/).map(Number);
    const lines = [
      { QMP: { version: { qemu: { micro, minor, major }, package: meta.qemuVersion.replace(/^\S+ /, '') }, capabilities: ['oob'] } },
      { return: {}, id: 1 },
      { timestamp: { seconds: 1764763200, microseconds: 5 }, event: 'MIGRATION', data: { status: 'active' } },
      { return: meta.queryMigrate, id: 2 },
      { error: { class: 'GenericError', desc: "Parameter 'x-foo' is unexpected" }, id: 3 },
      { timestamp: { seconds: 1764763201, microseconds: 7 }, event: 'STOP' },
    ];
    const text = lines.map((line) => `${JSON.stringify(line)}\r\n`);
    seeds.push({ name: `${fixture}.qmp`, bytes: Buffer.from(text.join('')), boundaries: startOffsets(text.map((line) => Buffer.byteLength(line))) });
  }
  return seeds;
}

/** The QMP client's reader (src/qemu/qmp-wire.ts): lines, then what each line is. */
export const qmpTarget: Target = {
  name: 'qmp',
  layer: 'QMP line splitter and message parser (src/qemu/qmp-wire.ts)',
  refusal: 'QmpConnectionError',
  isRefusal: (error) => error instanceof QmpConnectionError,
  seeds: qmpSeeds,
  async run(input, chunks) {
    const splitter = new QmpLineSplitter();
    for (const chunk of inChunks(input, chunks)) for (const line of splitter.push(chunk)) parseQmpLine(line);
    return 'accepted';
  },
};

/**
 * The tunnel's wire (protocol version 3) as the destination side reads it: the frames a source
 * side sends for a real stream (STREAM, STREAM_DATA raw and lz4, WINDOW, STREAM_END,
 * STREAM_RESET, PING) through the version 3 parser into a listener's session machine. A
 * refusal is a ProtocolError from the parser or the session; a session that failed on its own
 * rules (credit, ids, byte counts, codecs) reports one too.
 */
export const tunnelTarget: Target = {
  name: 'tunnel',
  layer: 'tunnel wire and session machine (src/tunnel/wire.ts, session.ts)',
  refusal: 'ProtocolError, PeerAbortError (an ABORT frame)',
  isRefusal: (error) => error instanceof ProtocolError || error instanceof PeerAbortError,
  async seeds() {
    const streams = await loadStreamSeeds();
    // Page-aware: the seeds carry page tables (a 1 MiB cache of 256 slots) for the parser to mutate.
    const lz4 = frameCodec(codecByName('lz4'), 1, { pageCacheBytes: 1 << 20 });
    const out: TargetSeed[] = [];
    for (const [i, stream] of streams.entries()) {
      const raw = stream.bytes.subarray(0, 256 * 1024);
      const frames: Buffer[] = [
        encodeOpen({ version: TUNNEL_PROTOCOL_VERSION, sessionId: SESSION_ID, channels: 1, index: 0, codec: 1 }),
        encodeStream(1, '/run/mig/qemu.sock'),
        encodeStream(2, '/run/mig/nbd.sock'),
      ];
      for (let at = 0; at < raw.length; at += 16 * 1024) {
        const chunk = raw.subarray(at, at + 16 * 1024);
        const { codec, payload } = i % 2 === 0 && typeof lz4 !== 'string' ? lz4.compress(1, chunk) : { codec: 0, payload: chunk };
        frames.push(Buffer.concat([encodeStreamDataHeader(1, codec, chunk.length, payload.length), payload]));
      }
      frames.push(encodeWindow(1, 65536), encodeStreamEnd(1, raw.length), encodeStreamReset(2, 'fuzz'), encodePing());
      out.push({ name: `${stream.name}.tunnel`, bytes: Buffer.concat(frames), boundaries: startOffsets(frames.map((frame) => frame.length)) });
    }
    return out;
  },
  async run(input, chunks) {
    const parser = new FrameParser<TunnelFrame>(0, undefined, decodeTunnelFrame);
    const lz4 = frameCodec(codecByName('lz4'), 1);
    const session = new TunnelSession({ side: 'listener', channels: 1, window: 1 << 20, ...(typeof lz4 === 'string' ? {} : { codec: lz4 }) }, 0);
    let opened = false;
    for (const chunk of inChunks(input, chunks)) {
      for (const frame of parser.push(chunk)) {
        if (!opened && frame.type === TunnelFrameType.OPEN) {
          opened = true;
          continue;
        }
        session.frame(0, frame, 0);
        // Connect whatever the session asks for at once, as the I/O edge would.
        for (const action of session.drain()) {
          if (action.kind === 'connect') session.connected(action.stream);
          else if (action.kind === 'write') session.localWritten(action.stream, action.data.length);
        }
        if (session.failed !== null) throw session.failed;
      }
    }
    return 'accepted';
  },
};

export function allTargets(scratch: string): Target[] {
  return [streamTarget, vmdescTarget, containerTarget, decompressTarget(scratch), wireTarget, tunnelTarget, qmpTarget];
}
