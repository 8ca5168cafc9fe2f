/**
 * readerGone: a pipe's writing end knows when its reader went, without writing to it.
 * widenPipe: a pipe holds more once widened (a non-blocking write takes it all), never less.
 * writeRanges: ranges of several buffers written in order as gathered writes, through partial
 * writes, more ranges than one writev takes and a full non-blocking pipe; EPIPE as Node reports
 * it; every range checked before anything is written.
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { limitUnsent, nativeBinding, readerGone, socketDescriptor, widenPipe, writeRanges } from '../../src/native.js';
import { ArgumentError } from '../../src/stream/errors.js';
import { prng } from '../helpers/feed.js';

function scratchPath(name: string): string {
  return join(mkdtempSync(join(tmpdir(), 'migstream-fd-')), name);
}

/** Random buffers and random ranges of them (some empty), with the bytes they stand for. */
function randomRanges(seed: number, count: number): { buffers: Buffer[]; ranges: Float64Array; expected: Buffer } {
  const random = prng(seed);
  const buffers = [0, 1, 2, 3].map((i) => Buffer.from(Array.from({ length: 5000 + i * 777 }, () => Math.floor(random() * 256))));
  const ranges = new Float64Array(3 * count);
  const parts: Buffer[] = [];
  for (let r = 0; r < count; r++) {
    const index = Math.floor(random() * buffers.length);
    const buffer = buffers[index]!;
    const offset = Math.floor(random() * buffer.length);
    const length = random() < 0.1 ? 0 : Math.floor(random() * Math.min(600, buffer.length - offset));
    ranges.set([index, offset, length], 3 * r);
    parts.push(buffer.subarray(offset, offset + length));
  }
  return { buffers, ranges, expected: Buffer.concat(parts) };
}

describe('readerGone', () => {
  test('false while the pipe has a reader, true once the reader closed it', () => {
    const fifo = join(mkdtempSync(join(tmpdir(), 'migstream-fd-')), 'fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = openSync(fifo, constants.O_WRONLY);
    try {
      expect(readerGone(writer)).toBe(false);
      closeSync(reader);
      expect(readerGone(writer)).toBe(true);
    } finally {
      closeSync(writer);
    }
  });

  test('false for a regular file and for a descriptor that is not open', () => {
    const fd = openSync(join(mkdtempSync(join(tmpdir(), 'migstream-fd-')), 'file'), 'w');
    expect(readerGone(fd)).toBe(false);
    closeSync(fd);
    expect(readerGone(fd)).toBe(false);
  });

  test('a negative or fractional descriptor is an ArgumentError', () => {
    expect(() => readerGone(-1)).toThrow(ArgumentError);
    expect(() => readerGone(1.5)).toThrow(ArgumentError);
    // The addon checks again when called directly.
    const raw = nativeBinding() as unknown as { readerGone: (...args: unknown[]) => boolean };
    expect(() => raw.readerGone(-1)).toThrow(ArgumentError);
    expect(() => raw.readerGone('1')).toThrow(ArgumentError);
    expect(() => raw.readerGone()).toThrow(ArgumentError);
  });
});

describe('widenPipe', () => {
  /** Bytes a non-blocking write puts into the pipe before it is full (nobody reads). */
  function fill(fd: number): number {
    const chunk = Buffer.alloc(1 << 16);
    let total = 0;
    for (;;) {
      try {
        total += writeSync(fd, chunk);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return total;
        throw error;
      }
    }
  }

  test('a widened pipe takes 1 MiB before it is full, where it took 64 KiB; it is never narrowed', () => {
    const fifo = scratchPath('fifo');
    execFileSync('mkfifo', [fifo]);
    // Both ends in one descriptor (Linux opens a FIFO read-write without waiting for a peer).
    const narrow = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    const wide = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    try {
      expect(fill(narrow)).toBe(1 << 16);
      // The same pipe: drained by reading it back, then widened.
      const sink = Buffer.alloc(1 << 16);
      expect(readSync(narrow, sink)).toBe(1 << 16);
      expect(widenPipe(wide, 1 << 20)).toBe(1 << 20);
      expect(fill(wide)).toBe(1 << 20);
      // Asking for less keeps what it has.
      expect(widenPipe(wide, 4096)).toBe(1 << 20);
    } finally {
      closeSync(narrow);
      closeSync(wide);
    }
  });

  test('undefined for a regular file or a descriptor that is not open; bad arguments are ArgumentErrors', () => {
    const fd = openSync(scratchPath('file'), 'w');
    expect(widenPipe(fd)).toBeUndefined();
    closeSync(fd);
    expect(widenPipe(fd)).toBeUndefined();
    expect(() => widenPipe(-1)).toThrow(ArgumentError);
    expect(() => widenPipe(0, 100)).toThrow(ArgumentError);
    expect(() => widenPipe(0, 2 ** 31)).toThrow(ArgumentError);
    const raw = nativeBinding() as unknown as { widenPipe: (...args: unknown[]) => number };
    expect(() => raw.widenPipe(0)).toThrow(ArgumentError);
    expect(() => raw.widenPipe(0, -1)).toThrow(ArgumentError);
    expect(() => raw.widenPipe('0', 4096)).toThrow(ArgumentError);
  });
});

describe('writeRanges', () => {
  test('writes the ranges in order, more of them than one writev takes, into a file', async () => {
    const { buffers, ranges, expected } = randomRanges(1, 5000);
    const path = scratchPath('out');
    const fd = openSync(path, 'w');
    try {
      expect(await writeRanges(fd, buffers, ranges, 5000)).toBe(expected.length);
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(path).equals(expected)).toBe(true);
  });

  test('through a pipe far smaller than the data, read slowly by another process', async () => {
    const { buffers, ranges, expected } = randomRanges(2, 20_000);
    const fifo = scratchPath('fifo');
    const out = scratchPath('copy');
    execFileSync('mkfifo', [fifo]);
    // dd with small blocks and a pause: many partial writes on our side.
    const reader = spawn('sh', ['-c', `sleep 0.2; dd if=${fifo} of=${out} bs=4096 status=none`]);
    const fd = openSync(fifo, constants.O_WRONLY);
    try {
      expect(await writeRanges(fd, buffers, ranges, 20_000)).toBe(expected.length);
    } finally {
      closeSync(fd);
    }
    await new Promise((resolve) => reader.on('exit', resolve));
    expect(readFileSync(out).equals(expected)).toBe(true);
  });

  test('waits out a full non-blocking pipe instead of failing with EAGAIN', async () => {
    const fifo = scratchPath('fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    const data = Buffer.alloc(1 << 20, 0x5a);
    const received: Buffer[] = [];
    const chunk = Buffer.alloc(65536);
    // Drain slowly on this thread while the write blocks on the pool.
    const drain = setInterval(() => {
      try {
        const n = readSync(reader, chunk);
        if (n > 0) received.push(Buffer.from(chunk.subarray(0, n)));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      }
    }, 1);
    try {
      expect(await writeRanges(writer, [data], Float64Array.of(0, 0, data.length), 1)).toBe(data.length);
      while (Buffer.concat(received).length < data.length) await new Promise((resolve) => setTimeout(resolve, 5));
    } finally {
      clearInterval(drain);
      closeSync(writer);
      closeSync(reader);
    }
    expect(Buffer.concat(received).equals(data)).toBe(true);
  });

  test('a pipe nobody reads any more rejects with EPIPE, as Node reports it', async () => {
    const fifo = scratchPath('fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = openSync(fifo, constants.O_WRONLY);
    closeSync(reader);
    try {
      await expect(writeRanges(writer, [Buffer.alloc(10)], Float64Array.of(0, 0, 10), 1)).rejects.toMatchObject({
        code: 'EPIPE',
        syscall: 'writev',
        message: expect.stringMatching(/^EPIPE: broken pipe, writev$/),
      });
    } finally {
      closeSync(writer);
    }
  });

  test('a range outside its buffer, a bad buffer or count is an ArgumentError, before anything is written', () => {
    const path = scratchPath('out');
    const fd = openSync(path, 'w');
    const raw = nativeBinding() as unknown as { writeRanges: (...args: unknown[]) => Promise<number> };
    const buffers = [Buffer.alloc(8), Buffer.alloc(4)];
    try {
      for (const call of [writeRanges, raw.writeRanges.bind(raw)] as ((...args: unknown[]) => unknown)[]) {
        // The first range is fine: nothing may be written before the bad second one is seen.
        expect(() => call(fd, buffers, Float64Array.of(0, 0, 8, 1, 2, 3), 2)).toThrow(/range 1 \(buffer 1, offset 2, length 3\) lies outside its buffer/);
        expect(() => call(fd, buffers, Float64Array.of(2, 0, 1), 1)).toThrow(/range 0 .* lies outside its buffer/);
        expect(() => call(fd, buffers, Float64Array.of(0, 0.5, 1), 1)).toThrow(/range 0 .* lies outside its buffer/);
        expect(() => call(fd, buffers, Float64Array.of(0, -1, 1), 1)).toThrow(ArgumentError);
        expect(() => call(fd, buffers, Float64Array.of(0, 0, 1), 2)).toThrow(/count/);
        expect(() => call(fd, [buffers[0], 'x'], Float64Array.of(0, 0, 1), 1)).toThrow(/buffers\[1\] must be a Uint8Array/);
        expect(() => call(fd, buffers, [0, 0, 1], 1)).toThrow(/ranges must be a Float64Array/);
        expect(() => call(-1, buffers, Float64Array.of(0, 0, 1), 1)).toThrow(/fd/);
      }
      expect(() => raw.writeRanges(fd, buffers)).toThrow(/expected 4 arguments/);
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(path).length).toBe(0);
  });
});

describe('limitUnsent and socketDescriptor', () => {
  test('a TCP socket, plain or under TLS, takes the limit; its descriptor is found either way', async () => {
    const { createServer } = await import('node:net');
    const { connect: tlsConnect } = await import('node:tls');
    const server = createServer((peer) => peer.on('error', () => {}));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const { connect } = await import('node:net');
      const plain = connect(port, '127.0.0.1');
      await new Promise((resolve) => plain.once('connect', resolve));
      const fd = socketDescriptor(plain);
      expect(fd).toBeGreaterThan(2);
      expect(limitUnsent(fd!, 64 * 1024)).toBe(true);
      expect(limitUnsent(fd!, 16 * 1024)).toBe(true);
      plain.destroy();
      // A TLS client socket (the handshake never completes: the server speaks no TLS).
      const secure = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false });
      secure.on('error', () => {});
      await new Promise((resolve) => secure.once('connect', resolve));
      const tlsFd = socketDescriptor(secure);
      expect(tlsFd).toBeGreaterThan(2);
      expect(limitUnsent(tlsFd!, 32 * 1024)).toBe(true);
      secure.destroy();
    } finally {
      server.close();
    }
  });

  test('false for a pipe or a file; undefined descriptor for an unconnected socket; bad arguments are ArgumentErrors', async () => {
    const fd = openSync(scratchPath('file'), 'w');
    expect(limitUnsent(fd, 4096)).toBe(false);
    closeSync(fd);
    const { Socket } = await import('node:net');
    expect(socketDescriptor(new Socket())).toBeUndefined();
    expect(socketDescriptor({})).toBeUndefined();
    expect(() => limitUnsent(-1, 4096)).toThrow(ArgumentError);
    expect(() => limitUnsent(0, 0)).toThrow(ArgumentError);
    const raw = nativeBinding() as unknown as { limitUnsent: (...args: unknown[]) => number };
    expect(() => raw.limitUnsent(0)).toThrow(ArgumentError);
    expect(() => raw.limitUnsent(0, -1)).toThrow(ArgumentError);
  });
});
