/**
 * The sending side's main thread: reads the source stream, checks it with the decoder and
 * cuts it into frames. Which channel sends each frame, when channels join, END and the check of
 * DONE are the session machine's (send-session.ts): this file feeds it what the input and the
 * channel workers say and carries out its actions. With no credit anywhere it stops reading.
 */
import { randomBytes } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import { createDecoder, type BodyRecord } from '../codec.js';
import type { FramingRecord } from '../stream/records.js';
import { codecByName, resolveLevel, type CodecName } from '../codecs/registry.js';
import { ChannelError, transportErrorFrom } from './errors.js';
import { closedSignal, untilClosed } from './glue.js';
import { PrefetchingInput } from './input.js';
import type { TlsMaterial } from './credentials.js';
import type { FromSendWorker, SendWorkerData, ToSendWorker } from './messages.js';
import type { TransferSummary } from './summary.js';
import { startChannelWorker, workerUrl } from './channel-worker.js';
import { SendSession, type SendSessionAction, type SendSessionEvent } from './send-session.js';
import { CLOSE_GRACE_MS } from './wire.js';
import { HotPageHold, type HoldSavings } from '../ram/hot-page-hold.js';

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
  /** Every record the decoder read, before its bytes leave (decodes even without verify). */
  onRecords?: (records: readonly (FramingRecord | BodyRecord)[], pageSize: () => number) => void;
  /**
   * Hot-page dropping (ram/hot-page-hold.ts): while no channel has room, keep reading and hold
   * up to this many stream bytes, so that a page QEMU writes again while its earlier copy is
   * held replaces that copy. 0 (default): read only when a channel has room, hold nothing.
   */
  holdBytes?: number;
  /** The block section's chunk size (--mig-block-size); found from the stream when absent. */
  blockSize?: number;
  onProgress?: (bytes: number) => void;
  /** The input ended; what is left is delivering and confirming the buffered frames. */
  onInputEnd?: () => void;
  /** Kept up to date while sending, for whoever watches the transfer (migrate's send-stats). */
  counters?: SendCounters;
}

/**
 * Bytes so far. `streamBytes − leftBytes` (less what a hold dropped) is what sits in our frames
 * between QEMU's pipe and the kernel: at most channels × credit frames, and the hold, so the
 * pipe drains only as fast as the link.
 */
export interface SendCounters {
  /** Stream bytes read from the input. */
  streamBytes: number;
  /** Stream bytes of the frames the sockets took. */
  leftBytes: number;
  /** What those frames took on the wire (compressed, with headers). */
  wireBytes: number;
  /** What hot-page dropping saved so far; undefined without a hold. */
  hold?: HoldSavings;
}

interface Channel {
  worker: Worker;
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
  const codec = codecByName(options.codec);
  const level = resolveLevel(codec, options.level);
  const sessionId = randomBytes(16);
  const url = workerUrl('send-worker');
  const session = new SendSession({ channels: options.channels, credit: options.credit ?? 4 });
  const channels: Channel[] = [];

  let wake: (() => void) | undefined;
  const poke = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const waitForEvent = (): Promise<void> => new Promise((resolve) => (wake = resolve));

  const feed = (event: SendSessionEvent): void => {
    for (const action of session.on(event)) carryOut(action);
    poke();
  };

  const carryOut = (action: SendSessionAction): void => {
    const worker = channels[action.type === 'completed' || action.type === 'failed' ? 0 : action.index]?.worker;
    switch (action.type) {
      case 'join':
        worker?.postMessage({ t: 'join' } satisfies ToSendWorker);
        return;
      case 'send':
        worker?.postMessage({ t: 'frame', seq: action.seq, data: action.data } satisfies ToSendWorker, [action.data.buffer as ArrayBuffer]);
        return;
      case 'end':
        worker?.postMessage({ t: 'end', frames: action.frames, bytes: action.bytes, digest: action.digest } satisfies ToSendWorker);
        return;
      case 'abort':
        worker?.postMessage({ t: 'abort', reason: action.reason } satisfies ToSendWorker);
        return;
      case 'completed':
      case 'failed':
        return; // the waiting loop sees the state
    }
  };

  const startChannel = (index: number): void => {
    const data: SendWorkerData = { index, host: options.host, port: options.port, tls: options.tls, sessionId, channels: options.channels, codec: codec.id, level, timeoutMs, unsentLimitBytes: frameBytes };
    const worker = startChannelWorker(url, data, `migstream-send-${index}`);
    const { closed, resolve: markClosed } = closedSignal();
    channels.push({ worker, closed });
    worker.on('message', (message: FromSendWorker) => {
      switch (message.t) {
        case 'open':
          return feed({ type: 'opened', index });
        case 'credit':
          if (options.counters) {
            options.counters.leftBytes += message.raw;
            options.counters.wireBytes += message.wire;
          }
          input?.recycle(message.buffer);
          return feed({ type: 'credit', index, wire: message.wire });
        case 'done':
          return feed({ type: 'done', bytes: message.bytes });
        case 'closed':
          return markClosed();
        case 'error':
          return feed({ type: 'fail', error: transportErrorFrom(message.error) });
      }
    });
    worker.on('error', (error) => feed({ type: 'fail', error: new ChannelError(`worker failed: ${error.message}`, index, { cause: error }) }));
    worker.on('exit', (code) => {
      markClosed();
      feed({ type: 'worker-exit', index, code });
    });
  };

  const until = async (condition: () => boolean): Promise<void> => {
    while (!condition()) {
      if (session.failure) throw session.failure;
      await waitForEvent();
    }
    if (session.failure) throw session.failure;
  };

  const started = process.hrtime.bigint();
  let input: PrefetchingInput | undefined;
  try {
    // Reading starts at once, so QEMU's pipe drains (a few frames) while the channels connect.
    // A frame goes out once a quarter full if the channels are idle: a slow source should not
    // wait for a whole frame.
    input = new PrefetchingInput(options.input, { frameBytes, minBytes: frameBytes >> 2 });
    // Every channel starts its worker, connects and shakes hands at once; channel 0 opens the
    // session and the others join it once it exists (the session's `join` actions).
    for (let i = 0; i < options.channels; i++) startChannel(i);

    const holdBytes = options.holdBytes ?? 0;
    const hold = holdBytes > 0 ? new HotPageHold() : undefined;
    const decoder = options.verify === false && options.onRecords === undefined && hold === undefined ? undefined : createDecoder(options.blockSize === undefined ? {} : { blockSize: options.blockSize });
    const pageSize = (): number => decoder!.parameters.pageSize;
    const counters = options.counters;
    const records = (list: readonly (FramingRecord | BodyRecord)[]): void => {
      options.onRecords?.(list, pageSize);
      hold?.addRecords(list, decoder!.recordEnds);
    };
    const sendHeld = (): void => {
      while (hold!.heldFrames > 0 && session.canSend) {
        const data = hold!.release()!;
        if (counters) counters.hold = hold!.result();
        feed({ type: 'frame', data });
      }
    };
    // With a hold, the input is read while the hold has room even when no channel has; a read
    // in flight is kept across turns, and a credit coming back meanwhile sends held frames.
    let reading: Promise<Buffer | null> | undefined;
    let inputEnded = false;
    let readBytes = 0;
    for (;;) {
      if (hold) sendHeld();
      if (inputEnded) {
        if (hold === undefined || hold.heldFrames === 0) break;
        await until(() => session.canSend);
        continue;
      }
      const holdHasRoom = hold !== undefined && session.state === 'streaming' && hold.heldBytes < holdBytes;
      if (!session.canSend && !holdHasRoom) {
        await until(() => session.canSend);
        continue;
      }
      reading ??= input.next();
      const chunk = hold && hold.heldFrames > 0 ? await Promise.race([reading, waitForEvent().then(() => undefined)]) : await reading;
      if (session.failure) throw session.failure;
      if (chunk === undefined) continue; // a channel's event came first: maybe room for held frames
      reading = undefined;
      if (chunk === null) {
        const tail = decoder?.end();
        if (tail) records(tail);
        inputEnded = true;
        options.onInputEnd?.();
        continue;
      }
      // The hold learns the frame before its records: it places each record by stream offset.
      hold?.addFrame(chunk);
      if (decoder) {
        records(decoder.push(chunk));
        decoder.releaseInput();
      }
      // Counted before the frame goes: sending transfers its buffer to a worker.
      readBytes += chunk.length;
      if (!hold) feed({ type: 'frame', data: chunk });
      if (counters) counters.streamBytes = readBytes;
      options.onProgress?.(readBytes);
    }
    feed({ type: 'input-ended' });
    await until(() => session.state === 'done');
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return {
      bytes: session.bytes,
      frames: session.frames,
      seconds,
      digest: session.digestValue,
      codec: codec.name,
      tls: options.tls !== null,
      channels: session.stats,
      ...(hold ? { hold: { limitBytes: holdBytes, streamBytes: readBytes, ...hold.result() } } : {}),
    };
  } catch (error) {
    // The session aborts every channel (already, if a channel failed first).
    feed({ type: 'fail', error: error instanceof Error ? error : new Error(String(error)) });
    // The workers tell the receiver why: wait until their sockets have closed, up to a deadline.
    await untilClosed(
      channels.map((c) => c.closed),
      ABORT_DEADLINE_MS,
    );
    throw error;
  } finally {
    input?.close();
    await Promise.all(channels.map((c) => c.worker.terminate()));
  }
}
