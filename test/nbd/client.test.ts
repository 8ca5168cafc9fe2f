/**
 * NbdClient against fake servers on a Unix socket (and one on TCP), speaking hand-built bytes
 * (test/helpers/nbd-bytes.ts): pipelined requests answered out of order, requests split past
 * the server's maximum, block status asked again where the server stopped, and every way a
 * server can fail the client: a typed error naming the peer and the request, never a hang.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { NbdClient } from '../../src/nbd/client.js';
import { NbdCommandError, NbdConnectionError, NbdProtocolError, NbdTimeoutError } from '../../src/nbd/errors.js';
import { ArgumentError } from '../../src/stream/errors.js';
import * as B from '../helpers/nbd-bytes.js';

const dir = mkdtempSync(join(tmpdir(), 'migstream-nbd-client-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SIZE = 16 * 1024 * 1024;
const MAX = 1024 * 1024;
const FLAGS = B.TFLAG.HAS_FLAGS | B.TFLAG.SEND_FLUSH | B.TFLAG.SEND_FUA | B.TFLAG.SEND_WRITE_ZEROES;

interface Request {
  flags: number;
  type: number;
  handle: bigint;
  offset: number;
  length: number;
  data?: Buffer;
}

interface FakeOptions {
  /** The server's handshake bytes; default: grants base:allocation (id 5) and the export. */
  handshake?: Buffer;
  contexts?: string[];
  flags?: number;
  /** Called with each whole request (WRITE with its data). */
  onRequest?: (request: Request, socket: Socket) => void;
}

let servers: Server[] = [];
let connections: Socket[] = [];
let serial = 0;
afterEach(async () => {
  // server.close waits for its connections: end them first.
  for (const socket of connections) socket.destroy();
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  servers = [];
  connections = [];
});

/** What the client sends in its handshake for `contexts`, which the fake server skips. */
function clientHandshake(contexts: string[]): Buffer {
  return Buffer.concat([
    B.clientFlags(3),
    B.option(B.OPT.STRUCTURED_REPLY),
    ...(contexts.length ? [B.option(B.OPT.SET_META_CONTEXT, B.metaContextData('', contexts))] : []),
    B.option(B.OPT.GO, B.goData('', [B.INFO.BLOCK_SIZE])),
  ]);
}

function grantingHandshake(contexts: string[], flags: number): Buffer {
  return Buffer.concat([
    B.greeting(),
    B.ack(B.OPT.STRUCTURED_REPLY),
    ...(contexts.length ? [...contexts.map((name, i) => B.metaContext(B.OPT.SET_META_CONTEXT, 5 + i, name)), B.ack(B.OPT.SET_META_CONTEXT)] : []),
    B.infoExport(SIZE, flags),
    B.infoBlockSize(512, 4096, MAX),
    B.ack(B.OPT.GO),
  ]);
}

/** A server on a fresh Unix socket: the whole handshake at once, then requests parsed by hand. */
async function fake(options: FakeOptions = {}, tcp = false): Promise<{ where: { path: string } | { host: string; port: number }; requests: Request[]; sockets: Socket[] }> {
  const contexts = options.contexts ?? ['base:allocation'];
  const handshake = options.handshake ?? grantingHandshake(contexts, options.flags ?? FLAGS);
  const skip = clientHandshake(contexts).length;
  const requests: Request[] = [];
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    connections.push(socket);
    socket.on('error', () => {});
    let input = Buffer.alloc(0);
    let skipped = 0;
    socket.write(handshake);
    socket.on('data', (chunk: Buffer) => {
      input = Buffer.concat([input, chunk]);
      if (skipped < skip) {
        const n = Math.min(skip - skipped, input.length);
        skipped += n;
        input = input.subarray(n);
      }
      for (;;) {
        if (input.length < 28) return;
        const type = input.readUInt16BE(6);
        const length = input.readUInt32BE(24);
        const whole = 28 + (type === B.CMD.WRITE ? length : 0);
        if (input.length < whole) return;
        const request: Request = {
          flags: input.readUInt16BE(4),
          type,
          handle: input.readBigUInt64BE(8),
          offset: Number(input.readBigUInt64BE(16)),
          length,
          ...(type === B.CMD.WRITE ? { data: Buffer.from(input.subarray(28, whole)) } : {}),
        };
        expect(input.readUInt32BE(0)).toBe(B.REQUEST_MAGIC);
        input = input.subarray(whole);
        requests.push(request);
        options.onRequest?.(request, socket);
      }
    });
  });
  servers.push(server);
  if (tcp) {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { where: { host: '127.0.0.1', port: (server.address() as AddressInfo).port }, requests, sockets };
  }
  const path = join(dir, `s${serial++}.sock`);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { where: { path }, requests, sockets };
}

const pattern = (offset: number, length: number): Buffer => Buffer.from(Array.from({ length }, (_, i) => (((offset + i) * 31) >>> 8) & 0xff));

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

describe('against a well-behaved fake server', () => {
  test('connect reports size, flags, block sizes and contexts', async () => {
    const { where } = await fake();
    const nbd = await NbdClient.connect({ ...where, metaContexts: ['base:allocation'] });
    expect([nbd.size, nbd.flags, nbd.blockSizes, nbd.contexts, nbd.maxPayload, nbd.readOnly]).toEqual([SIZE, FLAGS, { minimum: 512, preferred: 4096, maximum: MAX }, ['base:allocation'], MAX, false]);
    await nbd.close();
  });

  test('pipelined reads answered in reverse order each get their own bytes; a read past the maximum is split', async () => {
    const held: Request[] = [];
    const { where, requests } = await fake({
      onRequest: (request, socket) => {
        held.push(request);
        if (held.length < 11) return;
        for (const r of held.reverse()) socket.write(B.offsetData(r.handle, r.offset, pattern(r.offset, r.length), true));
      },
    });
    const nbd = await NbdClient.connect({ ...where, metaContexts: ['base:allocation'] });
    const small = Array.from({ length: 8 }, (_, i) => nbd.read(i * 8192, 4096));
    const big = nbd.read(4 * MAX - 512 * 3, 3 * MAX);
    expect(nbd.inFlight).toBe(11);
    const results = await Promise.all(small);
    results.forEach((data, i) => expect(data.equals(pattern(i * 8192, 4096)), `read ${i}`).toBe(true));
    expect((await big).equals(pattern(4 * MAX - 1536, 3 * MAX))).toBe(true);
    expect(requests.slice(8).map((r) => [r.offset, r.length])).toEqual([
      [4 * MAX - 1536, MAX],
      [5 * MAX - 1536, MAX],
      [6 * MAX - 1536, MAX],
    ]);
    await nbd.close();
  });

  test('write, writeZeroes and flush send exactly their requests; close sends DISC', async () => {
    const { where, requests, sockets } = await fake({ onRequest: (r, socket) => r.type !== B.CMD.DISC && socket.write(B.simpleReply(0, r.handle)) });
    const nbd = await NbdClient.connect({ ...where, metaContexts: ['base:allocation'] });
    const data = pattern(0, 4096);
    await Promise.all([nbd.write(8192, data, { fua: true }), nbd.writeZeroes(1 << 20, 1 << 20, { noHole: true })]);
    await nbd.flush();
    const ended = new Promise((resolve) => sockets[0]!.on('end', resolve));
    await nbd.close();
    await ended;
    expect(requests.map((r) => [r.type, r.flags, r.handle, r.offset, r.length])).toEqual([
      [B.CMD.WRITE, 1, 1n, 8192, 4096],
      [B.CMD.WRITE_ZEROES, 2, 2n, 1 << 20, 1 << 20],
      [B.CMD.FLUSH, 0, 3n, 0, 0],
      [B.CMD.DISC, 0, 4n, 0, 0],
    ]);
    expect(requests[0]!.data!.equals(data)).toBe(true);
  });

  test('blockStatus asks again where the server stopped and joins equal neighbours', async () => {
    const { where, requests } = await fake({
      onRequest: (r, socket) => {
        // At most 64 KiB per answer, data then zero in 32 KiB halves.
        const first = Math.min(32768, r.length);
        const extents: [number, number][] = [[first, r.offset < 65536 ? 0 : 3]];
        if (r.length > first) extents.push([Math.min(32768, r.length - first), 3]);
        socket.write(B.blockStatus(r.handle, 5, extents, true));
      },
    });
    const nbd = await NbdClient.connect({ ...where, metaContexts: ['base:allocation'] });
    const extents = await nbd.blockStatus(0, 4 * 65536, 'base:allocation');
    expect(extents).toEqual([
      { offset: 0, length: 32768, flags: 0 },
      { offset: 32768, length: 3 * 65536 + 32768, flags: 3 },
    ]);
    expect(requests.map((r) => [r.offset, r.length])).toEqual([
      [0, 262144],
      [65536, 196608],
      [131072, 131072],
      [196608, 65536],
    ]);
    await nbd.close();
  });

  test('a server error fails one request; the next one still works', async () => {
    const { where } = await fake({
      onRequest: (r, socket) => socket.write(r.offset === 0 ? B.errorChunk(r.handle, 5, 'disk on fire') : B.offsetData(r.handle, r.offset, Buffer.alloc(r.length, 1), true)),
    });
    const nbd = await NbdClient.connect({ ...where, metaContexts: ['base:allocation'] });
    const error = await rejection(nbd.read(0, 512));
    expect(error).toBeInstanceOf(NbdCommandError);
    expect(error.message).toBe(`nbd unix:${(where as { path: string }).path} export "": READ offset 0x0 length 512: the server failed the request with EIO: "disk on fire"`);
    expect((await nbd.read(512, 512)).every((b) => b === 1)).toBe(true);
    await nbd.close();
  });

  test('over TCP', async () => {
    const { where } = await fake({ contexts: [], onRequest: (r, socket) => socket.write(B.offsetData(r.handle, r.offset, pattern(r.offset, r.length), true)) }, true);
    const nbd = await NbdClient.connect({ ...where });
    expect(nbd.peer).toMatch(/^tcp:127\.0\.0\.1:\d+ export ""$/);
    expect((await nbd.read(4096, 4096)).equals(pattern(4096, 4096))).toBe(true);
    await nbd.close();
  });

  test("the caller's mistakes are ArgumentErrors, before anything is sent", async () => {
    const { where, requests } = await fake({ flags: B.TFLAG.HAS_FLAGS | B.TFLAG.READ_ONLY });
    const nbd = await NbdClient.connect({ ...where, metaContexts: ['base:allocation'] });
    await expect(nbd.read(SIZE - 512, 1024)).rejects.toThrow(ArgumentError);
    await expect(nbd.read(100, 512)).rejects.toThrow(/multiples of the minimum block size 512/);
    await expect(nbd.read(0, 0)).rejects.toThrow(ArgumentError);
    await expect(nbd.write(0, Buffer.alloc(512))).rejects.toThrow(/read-only/);
    await expect(nbd.flush()).rejects.toThrow(/does not offer FLUSH/);
    await expect(nbd.blockStatus(0, 512, 'qemu:dirty-bitmap:x')).rejects.toThrow(/was not selected/);
    await nbd.close();
    expect(requests.map((r) => r.type)).toEqual([B.CMD.DISC]);
  });
});

describe('a failing or hostile server', () => {
  test('cannot connect: a typed error naming the socket', async () => {
    const error = await rejection(NbdClient.connect({ path: join(dir, 'nobody.sock') }));
    expect(error).toBeInstanceOf(NbdConnectionError);
    expect(error.message).toMatch(/^nbd unix:.*nobody\.sock export "": cannot connect: .*ENOENT/);
  });

  test('closes during the handshake', async () => {
    const { where } = await fake({ handshake: B.greeting().subarray(0, 10) });
    const server = servers[0]!;
    server.on('connection', (socket) => setTimeout(() => socket.end(), 20));
    const error = await rejection(NbdClient.connect({ ...where }));
    expect(error).toBeInstanceOf(NbdConnectionError);
    expect(error.message).toMatch(/closed the connection during the handshake/);
  });

  test('says nothing during the handshake: a timeout', async () => {
    const { where } = await fake({ handshake: Buffer.alloc(0) });
    const started = Date.now();
    const error = await rejection(NbdClient.connect({ ...where, timeoutMs: 200 }));
    expect(error).toBeInstanceOf(NbdTimeoutError);
    expect(error.message).toMatch(/: handshake: no handshake within 200 ms/);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  test('a bad greeting over the socket', async () => {
    const { where } = await fake({ handshake: Buffer.from('SSH-2.0-OpenSSH_9.2p1 Debian\r\n') });
    const error = await rejection(NbdClient.connect({ ...where }));
    expect(error).toBeInstanceOf(NbdProtocolError);
    expect(error.message).toMatch(/not an NBD server: greeting magic 0x5353482d322e302d/);
  });

  test('says nothing to a request: every request in flight fails with a timeout naming one', async () => {
    const { where } = await fake();
    const nbd = await NbdClient.connect({ ...where, metaContexts: ['base:allocation'], timeoutMs: 200 });
    const started = Date.now();
    const [a, b] = await Promise.all([rejection(nbd.read(4096, 512)), rejection(nbd.flush())]);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(a).toBeInstanceOf(NbdTimeoutError);
    expect(b).toBe(a);
    expect(a.message).toMatch(/READ offset 0x1000 length 512: the server said nothing for 200 ms \(waiting on READ offset 0x1000 length 512 and 1 more\)/);
    // And every later request fails the same way, at once.
    await expect(nbd.read(0, 512)).rejects.toBe(a);
    await nbd.close();
  });

  test('closes mid-reply: the request it was answering is named', async () => {
    const { where } = await fake({
      onRequest: (r, socket) => {
        const whole = B.offsetData(r.handle, r.offset, Buffer.alloc(r.length), true);
        socket.end(whole.subarray(0, whole.length - 100));
      },
    });
    const nbd = await NbdClient.connect({ ...where, metaContexts: ['base:allocation'] });
    const error = await rejection(nbd.read(65536, 4096));
    expect(error).toBeInstanceOf(NbdConnectionError);
    expect(error.message).toMatch(/READ offset 0x10000 length 4096: the server closed the connection mid-reply/);
    await expect(nbd.read(0, 512)).rejects.toBe(error);
    await nbd.close();
  });

  test('closes with requests waiting and no reply begun', async () => {
    const { where } = await fake({ onRequest: (_r, socket) => socket.end() });
    const nbd = await NbdClient.connect({ ...where, metaContexts: ['base:allocation'] });
    const error = await rejection(nbd.writeZeroes(0, 4096));
    expect(error).toBeInstanceOf(NbdConnectionError);
    expect(error.message).toMatch(/WRITE_ZEROES offset 0x0 length 4096: the server closed the connection with 1 request\(s\) in flight/);
  });

  test('a bad reply magic fails every request in flight with a protocol error', async () => {
    let n = 0;
    const { where } = await fake({ onRequest: (_r, socket) => ++n === 3 && socket.write(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')) });
    const nbd = await NbdClient.connect({ ...where, metaContexts: ['base:allocation'] });
    const errors = await Promise.all([rejection(nbd.read(0, 512)), rejection(nbd.read(512, 512)), rejection(nbd.blockStatus(0, 4096, 'base:allocation'))]);
    for (const error of errors) expect(error).toBeInstanceOf(NbdProtocolError);
    expect(errors[0]!.message).toMatch(/reply magic 0x48545450/);
  });

  test('a chunk claiming 4 GiB is refused at its header: nothing is allocated, nothing hangs', async () => {
    const { where } = await fake({ onRequest: (r, socket) => socket.write(B.chunk(0, B.CHUNK.OFFSET_DATA, r.handle, Buffer.alloc(0), 0xffff_fff0)) });
    const nbd = await NbdClient.connect({ ...where, metaContexts: ['base:allocation'] });
    const error = await rejection(nbd.read(0, 4096));
    expect(error).toBeInstanceOf(NbdProtocolError);
    expect(error.message).toMatch(/READ offset 0x0 length 4096: OFFSET_DATA chunk of 4294967280 bytes: longer than the 4096 bytes asked/);
  });

  test('extents outside the request', async () => {
    const { where } = await fake({
      onRequest: (r, socket) =>
        socket.write(
          B.blockStatus(
            r.handle,
            5,
            [
              [r.length, 0],
              [512, 0],
            ],
            true,
          ),
        ),
    });
    const nbd = await NbdClient.connect({ ...where, metaContexts: ['base:allocation'] });
    const error = await rejection(nbd.blockStatus(4096, 4096, 'base:allocation'));
    expect(error).toBeInstanceOf(NbdProtocolError);
    expect(error.message).toMatch(/BLOCK_STATUS offset 0x1000 length 4096: BLOCK_STATUS extent 1 starts at 0x2000, past the request's end/);
  });
});
