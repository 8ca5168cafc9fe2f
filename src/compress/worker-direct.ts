/**
 * The worker side of direct mode (direct.ts): read a segment's frames from the container file,
 * check and decompress them, keep the segment as views until its turn, then write it to the
 * output fd with gathered writes. Read buffers are reused; nothing is spliced into a new buffer.
 */
import { readSync, writevSync } from 'node:fs';
import { unpack } from './frame-work.js';
import type { DoneReply, DropRequest, FailureReply, LoadReply, LoadRequest, WriteRequest } from './protocol.js';
import { segmentPieces } from './split.js';

type Reply = [LoadReply | DoneReply | FailureReply, ArrayBuffer[]];

interface Held {
  readonly pieces: Buffer[];
  /** Read buffers to reuse once the segment is written. */
  readonly buffers: Buffer[];
}

/** Segments checked and waiting for their turn to be written, by key. */
const held = new Map<number, Held>();
/** Read buffers free for reuse: no fresh (page-faulting) allocation per frame. */
const spare: Buffer[] = [];

function readBuffer(length: number): Buffer {
  const index = spare.findIndex((buffer) => buffer.length >= length);
  if (index >= 0) return spare.splice(index, 1)[0]!;
  return Buffer.allocUnsafeSlow(Math.max(length, 1 << 20));
}

function readFully(fd: number, into: Buffer, length: number, position: number): void {
  for (let done = 0; done < length; ) {
    const n = readSync(fd, into, done, length - done, position + done);
    if (n === 0) throw Object.assign(new Error(`the file ends ${length - done} bytes short of the frame`), { code: 'ESHORT' });
    done += n;
  }
}

export async function load(request: LoadRequest): Promise<Reply> {
  const buffers: Buffer[] = [];
  const release = (): void => void spare.push(...buffers);
  try {
    const raws: Buffer[] = [];
    for (const [i, frame] of request.frames.entries()) {
      const buffer = readBuffer(frame.storedLength);
      buffers.push(buffer);
      readFully(request.fd, buffer, frame.storedLength, frame.position);
      const which = request.data ? undefined : i === 0 ? 'meta' : 'payload';
      const raw = await unpack({ ...frame, stored: buffer.subarray(0, frame.storedLength) }, which);
      if (!Buffer.isBuffer(raw)) {
        release();
        return [raw, []];
      }
      raws.push(raw);
    }
    let pieces: Buffer[];
    let length: number;
    if (request.data) {
      pieces = raws;
      length = raws[0]!.length;
    } else {
      const result = segmentPieces(raws[0]!, raws[1], request.pageSize);
      if ('problem' in result) {
        release();
        return [{ ok: false, kind: 'layout', message: result.problem, frame: result.frame }, []];
      }
      ({ pieces, length } = result);
    }
    held.set(request.key, { pieces, buffers });
    return [{ ok: true, length }, []];
  } catch (error) {
    release();
    const code = (error as NodeJS.ErrnoException).code;
    return [{ ok: false, kind: 'io', message: (error as Error).message, code }, []];
  }
}

const pause = new Int32Array(new SharedArrayBuffer(4));
/** IOV_MAX on Linux: writev takes at most this many pieces per call. */
const IOV_MAX = 1024;

/** Writes every piece, in order, whatever partial writes or EAGAIN (a non-blocking pipe) happen. */
function writeAll(fd: number, pieces: Buffer[]): void {
  let i = 0;
  while (i < pieces.length) {
    let written: number;
    try {
      written = writevSync(fd, pieces.slice(i, i + IOV_MAX));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      // fd 1 shares its file description with a non-blocking one (e.g. 2>&1 to a pipe Node
      // opened): no poll() here, so wait a little for the reader.
      Atomics.wait(pause, 0, 0, 0.2);
      continue;
    }
    while (written > 0) {
      const piece = pieces[i]!;
      if (written >= piece.length) {
        written -= piece.length;
        i++;
      } else {
        pieces[i] = piece.subarray(written);
        written = 0;
      }
    }
    while (i < pieces.length && pieces[i]!.length === 0) i++;
  }
}

export function write(request: WriteRequest): Reply {
  const segment = held.get(request.key);
  if (segment === undefined) return [{ ok: false, kind: 'internal', message: `no segment ${request.key} held by this worker` }, []];
  held.delete(request.key);
  try {
    writeAll(request.fd, segment.pieces);
    return [{ ok: true }, []];
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return [{ ok: false, kind: 'io', message: (error as Error).message, code }, []];
  } finally {
    spare.push(...segment.buffers);
  }
}

export function drop(request: DropRequest): Reply {
  const segment = held.get(request.key);
  held.delete(request.key);
  if (segment) spare.push(...segment.buffers);
  return [{ ok: true }, []];
}

