/**
 * The QMP client against a peer that does not speak QMP as QEMU does, found by the fuzzer
 * (npm run fuzz, target "qmp"): a JSON line that is not an object threw a TypeError inside the
 * socket's data handler, which took the whole process down.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { QmpConnectionError } from '../../src/qemu/errors.js';
import { QmpClient } from '../../src/qemu/qmp.js';
import { MAX_QMP_LINE, QmpLineSplitter, parseQmpLine } from '../../src/qemu/qmp-wire.js';

const dir = mkdtempSync(join(tmpdir(), 'migstream-qmp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const GREETING = '{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}\r\n';

/** A QMP server that greets, answers qmp_capabilities, then sends `after` to the next command. */
async function fakeQmp(name: string, after: (socket: Socket) => void): Promise<{ path: string; server: Server }> {
  const path = join(dir, `${name}.sock`);
  const server = createServer((socket) => {
    socket.write(GREETING);
    let commands = 0;
    socket.on('data', () => {
      if (commands++ === 0) socket.write('{"return": {}, "id": 1}\r\n');
      else after(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { path, server };
}

describe('QMP from a peer that does not speak it', () => {
  test.each([['null'], ['7'], ['[1]'], ['"text"']])('a line %s is a QmpConnectionError for the command waiting, not a crash', async (line) => {
    const { path, server } = await fakeQmp(`line-${line.length}`, (socket) => socket.write(`${line}\r\n`));
    const client = await QmpClient.connect(path);
    try {
      const error = await client.execute('query-status').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(QmpConnectionError);
      expect((error as Error).message).toContain('not a JSON object');
    } finally {
      client.close();
      server.close();
    }
  });

  test("a greeting that is not QMP's is refused", async () => {
    const path = join(dir, 'bad-greeting.sock');
    const server = createServer((socket) => socket.write('{"return": {}}\r\n'));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    await expect(QmpClient.connect(path, { timeoutMs: 2000 })).rejects.toThrow(QmpConnectionError);
    server.close();
  });

  test('a line longer than MAX_QMP_LINE without a newline ends the connection', () => {
    const splitter = new QmpLineSplitter();
    expect(splitter.push(Buffer.from('{"return": {}}\r\n{"ret'))).toEqual(['{"return": {}}']);
    expect(() => splitter.push(Buffer.alloc(MAX_QMP_LINE, 0x20))).toThrow(QmpConnectionError);
  });

  test('lines split inside a UTF-8 character and replies, errors and events are told apart', () => {
    const splitter = new QmpLineSplitter();
    const text = Buffer.from('{"error": {"class": "GenericError", "desc": "ü"}, "id": 4}\n{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}\n');
    const at = text.indexOf(Buffer.from('ü')) + 1;
    const lines = [...splitter.push(text.subarray(0, at)), ...splitter.push(text.subarray(at))];
    expect(lines.map(parseQmpLine)).toMatchObject([
      { kind: 'error', id: 4, error: { class: 'GenericError', desc: 'ü' } },
      { kind: 'event', event: 'STOP' },
    ]);
  });
});
