/**
 * The sending side's main thread: reads the source stream, checks it with the decoder, cuts
 * it into sequence-numbered frames and hands each to a channel worker that has credit.
 *
 * Credit is counted in frames: a worker starts with `credit` and gets one back per frame its
 * socket has taken. Frames go to the channel with the most credit, so a slow channel gets
 * fewer, and with no credit anywhere the main thread stops reading its input.
 */
import { randomBytes } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import { createDecoder, type BodyRecord } from '../codec.js';
import type { FramingRecord } from '../stream/records.js';
import { codecByName, resolveLevel, type CodecName } from '../compress/codecs.js';
import { StreamDigest } from './digest.js';
import { ChannelError, ChecksumError, TransportError, transportErrorFrom } from './errors.js';
import { PrefetchingInput } from './input.js';
import type { TlsMaterial } from './credentials.js';
import type { FromSendWorker, SendWorkerData, ToSendWorker } from './messages.js';
import type { ChannelStats, TransferSummary } from './summary.js';
import { startChannelWorker, workerUrl } from './channel-worker.js';
import { CLOSE_GRACE_MS } from './wire.js';

export interface SendOptions {
  host: string;
  port: number;
  channels: number;
  /** null: plaintext (--insecure). */
  tls: TlsMaterial | null;
  codec: CodecName;
  level?: number | undefined;
  /** Source stream descriptor (0 for stdin). */
  input: number;
  timeoutMs?: number;
  frameBytes?: number;
  credit?: number;
  /** Decode the stream while sending, so a damaged source fails before its end is sent. */
  verify?: boolean;
  /**
   * Every record the decoder read, before its bytes leave (decodes even without verify), with
   * the sequence number of the frame its last byte is in.
   */
  onRecords?: (records: readonly (FramingRecord | BodyRecord)[], pageSize: () => number, seq: number) => void;
  /** Frame `seq` left for the kernel (its credit came back). */
  onFrameLeft?: (seq: number) => void;
  onProgress?: (bytes: number) => void;
  /** The input ended; what is left is delivering and confirming the buffered frames. */
  onInputEnd?: () => void;
  /** Kept up to date while sending, for whoever watches the transfer (migrate's send-stats). */
  counters?: SendCounters;
}

/**
 * Bytes so far. `streamBytes − leftBytes` is what sits in our frames between QEMU's pipe and
 * the kernel: at most channels × credit frames, so the pipe drains only as fast as the link.
 */
export interface SendCounters {
  /** Stream bytes read from the input. */
  streamBytes: number;
  /** Stream bytes of the frames the sockets took. */
  leftBytes: number;
  /** What those frames took on the wire (compressed, with headers). */
  wireBytes: number;
}

interface Channel {
  worker: Worker;
  credit: number;
  stats: ChannelStats;
  /** Resolves once the worker's socket is closed (it answers an abort so) or the worker is gone. */
  closed: Promise<void>;
}

/**
 * How long a failing send waits for its channels to flush ABORT: a worker gives its socket
 * CLOSE_GRACE_MS before destroying it, and answers 'closed' as soon as the socket is closed.
 */
const ABORT_DEADLINE_MS = CLOSE_GRACE_MS + 100;

export async function send(options: SendOptions): Promise<TransferSummary> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const frameBytes = options.frameBytes ?? 1024 * 1024;
  const initialCredit = options.credit ?? 4;
  const codec = codecByName(options.codec);
  const level = resolveLevel(codec, options.level);
  const sessionId = randomBytes(16);
  const url = workerUrl('send-worker');
  const channels: Channel[] = [];

  let failure: TransportError | undefined;
  let wake: (() => void) | undefined;
  const poke = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const waitForEvent = (): Promise<void> => new Promise((resolve) => (wake = resolve));
  let opened = 0;
  let doneBytes: number | undefined;

  const failWith = (error: TransportError): void => {
    failure ??= error;
    poke();
  };

  const startChannel = (index: number): Channel => {
    const data: SendWorkerData = { index, host: options.host, port: options.port, tls: options.tls, sessionId, channels: options.channels, codec: codec.id, level, timeoutMs, unsentLimitBytes: frameBytes };
    const worker = startChannelWorker(url, data, `migstream-send-${index}`);
    let closed!: () => void;
    const channel: Channel = { worker, credit: 0, stats: { index, frames: 0, rawBytes: 0, wireBytes: 0 }, closed: new Promise((resolve) => (closed = resolve)) };
    worker.on('message', (message: FromSendWorker) => {
      switch (message.t) {
        case 'open':
          channel.credit = initialCredit;
          opened++;
          break;
        case 'credit':
          channel.credit++;
          channel.stats.wireBytes += message.wire;
          if (options.counters) {
            options.counters.leftBytes += message.raw;
            options.counters.wireBytes += message.wire;
          }
          input?.recycle(message.buffer);
          options.onFrameLeft?.(message.seq);
          break;
        case 'done':
          doneBytes = message.bytes;
          break;
        case 'closed':
          closed();
          break;
        case 'error':
          failWith(transportErrorFrom(message.error));
          break;
      }
      poke();
    });
    worker.on('error', (error) => failWith(new ChannelError(`worker failed: ${error.message}`, index, { cause: error })));
    worker.on('exit', (code) => {
      closed();
      if (doneBytes === undefined) failWith(new ChannelError(`worker exited (${code}) before the end of the stream`, index));
    });
    channels.push(channel);
    return channel;
  };

  const until = async (condition: () => boolean): Promise<void> => {
    while (!condition()) {
      if (failure) throw failure;
      await waitForEvent();
    }
    if (failure) throw failure;
  };

  const started = process.hrtime.bigint();
  let bytes = 0;
  let seq = 0;
  const digest = new StreamDigest();
  let input: PrefetchingInput | undefined;
  try {
    // Reading starts at once, so QEMU's pipe drains (a few frames) while the channels connect.
    // A frame goes out once a quarter full if the channels are idle: a slow source should not
    // wait for a whole frame.
    input = new PrefetchingInput(options.input, { frameBytes, minBytes: frameBytes >> 2 });
    // Every channel starts its worker, connects and shakes hands at once; channel 0 opens the
    // session and the others join it once it exists.
    for (let i = 0; i < options.channels; i++) startChannel(i);
    await until(() => opened >= 1);
    for (const c of channels.slice(1)) c.worker.postMessage({ t: 'join' } satisfies ToSendWorker);
    await until(() => opened === options.channels);

    const decoder = options.verify === false && options.onRecords === undefined ? undefined : createDecoder();
    const pageSize = (): number => decoder!.parameters.pageSize;
    for (;;) {
      await until(() => channels.some((c) => c.credit > 0));
      const chunk = await input.next();
      if (failure) throw failure;
      if (chunk === null) break;
      const n = chunk.length;
      digest.update(chunk);
      if (decoder) {
        const records = decoder.push(chunk);
        options.onRecords?.(records, pageSize, seq);
        decoder.releaseInput();
      }
      // Most credit first; ties rotate, so idle channels share the work (and the cores).
      let best = channels[seq % channels.length]!;
      for (const c of channels) if (c.credit > best.credit) best = c;
      best.credit--;
      best.stats.frames++;
      best.stats.rawBytes += n;
      const message: ToSendWorker = { t: 'frame', seq, data: chunk };
      best.worker.postMessage(message, [chunk.buffer as ArrayBuffer]);
      seq++;
      bytes += n;
      if (options.counters) options.counters.streamBytes = bytes;
      options.onProgress?.(bytes);
    }
    const tail = decoder?.end();
    if (tail) options.onRecords?.(tail, pageSize, seq);
    options.onInputEnd?.();
    const end: ToSendWorker = { t: 'end', frames: seq, bytes, digest: digest.value };
    for (const c of channels) c.worker.postMessage(end);
    await until(() => doneBytes !== undefined);
    if (doneBytes !== bytes) throw new ChecksumError(`the receiver confirmed ${doneBytes} bytes, ${bytes} were sent`);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return { bytes, frames: seq, seconds, digest: digest.value, codec: codec.name, tls: options.tls !== null, channels: channels.map((c) => c.stats) };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    for (const c of channels) c.worker.postMessage({ t: 'abort', reason } satisfies ToSendWorker);
    // The workers tell the receiver why: wait until their sockets have closed, up to a deadline.
    let deadline: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(channels.map((c) => c.closed)), new Promise((resolve) => (deadline = setTimeout(resolve, ABORT_DEADLINE_MS)))]);
    clearTimeout(deadline);
    throw error;
  } finally {
    input?.close();
    doneBytes ??= -1;
    await Promise.all(channels.map((c) => c.worker.terminate()));
  }
}
