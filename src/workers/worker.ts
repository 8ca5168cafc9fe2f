/**
 * Worker thread entry (started by pool.ts). It does the byte work of the container, one request
 * at a time: checksumming and compressing frames, checking and decompressing them and
 * splicing segments back (src/compress/pack-frame.ts, src/decompress/unpack-frame.ts and splice.ts). The main thread only decodes, plans and
 * orders.
 */
import { parentPort } from 'node:worker_threads';
import { serializeError } from '../errors.js';
import { pack } from '../compress/pack-frame.js';
import { unpack } from '../decompress/unpack-frame.js';
import type { CompressRequest, DecompressRequest, Envelope, FailureReply, PackReply, PackRequest, SpliceRequest, UnpackReply, WorkerRequest } from './protocol.js';
import { splice } from '../decompress/splice.js';
import { BufferPool } from '../bytes/buffer-pool.js';
import { asBuffer, transferable } from '../bytes/transfer.js';

const port = parentPort;
if (port === null) throw new Error('src/workers/worker.ts runs as a worker thread (see pool.ts)');

/** What splice decompresses the frames into before it copies them into the segment. */
const scratch = new BufferPool(2);

type Reply = [PackReply | UnpackReply | FailureReply, ArrayBuffer[]];

async function compress(request: CompressRequest): Promise<Reply> {
  const transfer: ArrayBuffer[] = [];
  const frame = await pack(request.codec, request.level, request.raw, transfer, request.outputs?.[0]);
  return [{ ok: true, frames: [frame] }, transfer];
}

async function packSegment(request: PackRequest): Promise<Reply> {
  const transfer: ArrayBuffer[] = [];
  const frames = [await pack(request.codec, request.level, request.meta, transfer, request.outputs?.[0])];
  if (request.payload !== undefined) frames.push(await pack(request.codec, request.level, request.payload, transfer, request.outputs?.[1]));
  return [{ ok: true, frames }, transfer];
}

async function decompress(request: DecompressRequest): Promise<Reply> {
  const raw = await unpack(request.frame);
  if (!Buffer.isBuffer(raw)) return [raw, []];
  const [bytes, transfer] = transferable(raw);
  return [{ ok: true, bytes }, transfer];
}

async function spliceSegment(request: SpliceRequest): Promise<Reply> {
  // The frames decompress into scratch (native codecs): splice copies them into the segment.
  const metaScratch = scratch.take(request.meta.rawLength);
  const payloadScratch = request.payload && scratch.take(request.payload.rawLength);
  try {
    return await spliceInto(request, metaScratch, payloadScratch);
  } finally {
    scratch.give(metaScratch.buffer as ArrayBuffer);
    if (payloadScratch) scratch.give(payloadScratch.buffer as ArrayBuffer);
  }
}

async function spliceInto(request: SpliceRequest, metaScratch: Buffer, payloadScratch: Buffer | undefined): Promise<Reply> {
  const meta = await unpack(request.meta, 'meta', metaScratch);
  if (!Buffer.isBuffer(meta)) return [meta, []];
  let payload: Buffer | undefined;
  if (request.payload !== undefined) {
    const raw = await unpack(request.payload, 'payload', payloadScratch);
    if (!Buffer.isBuffer(raw)) return [raw, []];
    payload = raw;
  }
  const result = splice(asBuffer(meta), payload, request.pageSize, request.window);
  if ('problem' in result) return [{ ok: false, kind: 'layout', message: result.problem, frame: result.frame }, []];
  const transfer = [result.bytes.buffer as ArrayBuffer];
  if (result.pages) transfer.push(result.pages.buffer as ArrayBuffer);
  return [{ ok: true, bytes: result.bytes, pages: result.pages }, transfer];
}

async function handle(request: WorkerRequest): Promise<Reply> {
  switch (request.op) {
    case 'compress':
      return compress(request);
    case 'pack':
      return packSegment(request);
    case 'decompress':
      return decompress(request);
    case 'splice':
      return spliceSegment(request);
  }
}

/** The buffer holding the request's bytes, to hand back to the main thread's slot pool. */
function lent(request: WorkerRequest): ArrayBuffer | undefined {
  let view: Uint8Array;
  switch (request.op) {
    case 'compress':
      view = request.raw;
      break;
    case 'pack':
      view = request.meta;
      break;
    case 'decompress':
      view = request.frame.stored;
      break;
    case 'splice':
      view = request.meta.stored;
      break;
    default:
      return undefined;
  }
  return view.buffer instanceof ArrayBuffer ? view.buffer : undefined;
}

port.on('message', (request: Envelope<WorkerRequest>) => {
  handle(request).then(
    ([reply, transfer]) => {
      const returned = lent(request);
      port.postMessage({ ...reply, id: request.id, returned }, returned ? [...transfer, returned] : transfer);
    },
    (error: unknown) => {
      const failure: FailureReply = { ok: false, kind: 'internal', message: (error as Error)?.message ?? String(error), error: serializeError(error) };
      port.postMessage({ ...failure, id: request.id });
    },
  );
});
