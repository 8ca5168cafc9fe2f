import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { PrefetchingInput } from '../../src/tls/input.js';

const scratch = mkdtempSync(join(tmpdir(), 'migstream-input-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function pattern(bytes: number): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i += 4) out.writeUInt32LE(i, i);
  return out;
}

async function drain(input: PrefetchingInput, consume?: () => Promise<void>): Promise<Buffer[]> {
  const frames: Buffer[] = [];
  for (let frame = await input.next(); frame !== null; frame = await input.next()) {
    frames.push(frame);
    await consume?.();
  }
  return frames;
}

describe('PrefetchingInput', () => {
  test('a file comes out whole, in full frames but the last', async () => {
    const data = pattern(5 * 65536 + 100);
    const path = join(scratch, 'file.bin');
    writeFileSync(path, data);
    const fd = openSync(path, 'r');
    try {
      const frames = await drain(new PrefetchingInput(fd, { frameBytes: 65536, minBytes: 16384 }), () => new Promise((r) => setTimeout(r, 2)));
      expect(Buffer.concat(frames).equals(data)).toBe(true);
      expect(frames.slice(0, -1).every((f) => f.length === 65536)).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  /**
   * stdin as a pipe (QEMU's exec: gives one) is read in place, into the frame being filled. A
   * shell pipes a writer of bursts into a child process that runs the built module on its stdin
   * and reports the frames' lengths and digest, and the pipe's capacity after start-up: with a
   * fast consumer frames leave early (cut, or copied out while reads go on into the same
   * buffer), with a slow one they fill up; either way every byte arrives once, in order.
   */
  async function readStdin(consumerDelayMs: number): Promise<{ lengths: number[]; capacity: number }> {
    const input = pathToFileURL(join(import.meta.dirname, '../../dist/tls/input.js')).href;
    const native = pathToFileURL(join(import.meta.dirname, '../../dist/native/fd.js')).href;
    const reader = `
      import { createHash } from 'node:crypto';
      const { PrefetchingInput } = await import(${JSON.stringify(input)});
      const { widenPipe } = await import(${JSON.stringify(native)});
      const source = new PrefetchingInput(0, { frameBytes: 1 << 18, minBytes: 1 << 14 });
      const hash = createHash('sha256');
      const lengths = [];
      for (let frame = await source.next(); frame !== null; frame = await source.next()) {
        hash.update(frame);
        lengths.push(frame.length);
        // A frame handed out is the consumer's: scribbling over it must not reach later frames.
        frame.fill(0xee);
        await new Promise((resolve) => setTimeout(resolve, ${consumerDelayMs}));
      }
      process.stdout.write(JSON.stringify({ lengths, sha: hash.digest('hex'), capacity: widenPipe(0, 4096) }));
    `;
    // Bursts of 100 to 400 KB with pauses, so reads end at every kind of place in a frame.
    const writer = `
      const b = Buffer.allocUnsafe(${BYTES});
      for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(i, i);
      let at = 0, i = 0;
      const step = () => {
        if (at >= b.length) return;
        const n = Math.min(100000 * (1 + (i % 4)), b.length - at);
        process.stdout.write(b.subarray(at, at + n), () => setTimeout(step, i % 3));
        at += n;
        i++;
      };
      step();
    `;
    const child = spawn('sh', ['-c', '"$NODE" -e "$WRITER" | "$NODE" --input-type=module -e "$READER"'], {
      env: { ...process.env, NODE: process.execPath, WRITER: writer, READER: reader },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    expect(await new Promise((resolve) => child.on('close', resolve))).toBe(0);
    const result = JSON.parse(out) as { lengths: number[]; sha: string; capacity: number };
    expect(result.lengths.reduce((a, b) => a + b, 0)).toBe(BYTES);
    expect(result.sha).toBe(createHash('sha256').update(pattern(BYTES)).digest('hex'));
    return result;
  }
  const BYTES = 3_000_000;

  test('stdin as a pipe, a fast consumer: every byte once, in order; frames leave before they are full', async () => {
    const { lengths, capacity } = await readStdin(0);
    expect(lengths.some((n) => n < 1 << 18)).toBe(true);
    // Widened from Linux's default of 64 KiB, so a read takes up to 1 MiB.
    expect(capacity).toBe(1 << 20);
  });

  test('stdin as a pipe, a slow consumer: every byte once, in order, in full frames but a few', async () => {
    const { lengths } = await readStdin(40);
    // The first frame or two leave early (the consumer asks at once); then reads fill them.
    expect(lengths.filter((n) => n === 1 << 18).length).toBeGreaterThanOrEqual(lengths.length - 3);
  });

  test('a pipe with pauses: every byte once, in order; partial frames leave while the source is quiet', async () => {
    const fifo = join(scratch, 'fifo');
    execFileSync('mkfifo', [fifo]);
    // Bursts of 100,000 bytes with 30 ms pauses between them.
    const writer = spawn(process.execPath, [
      '-e',
      `const fs=require('fs');const fd=fs.openSync(process.argv[1],'w');const b=Buffer.allocUnsafe(1e6);for(let i=0;i<1e6;i+=4)b.writeUInt32LE(i,i);
       let at=0;const step=()=>{if(at>=b.length){fs.closeSync(fd);return;}fs.writeSync(fd,b.subarray(at,at+1e5));at+=1e5;setTimeout(step,30);};step();`,
      fifo,
    ]);
    const fd = openSync(fifo, 'r');
    try {
      const started = Date.now();
      const frames = await drain(new PrefetchingInput(fd, { frameBytes: 1 << 20, minBytes: 65536 }));
      expect(Buffer.concat(frames).equals(pattern(1e6))).toBe(true);
      // Frames of 1 MiB would mean waiting for the end; a quiet source's bytes go out early.
      expect(frames.length).toBeGreaterThanOrEqual(5);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      closeSync(fd);
      writer.kill();
    }
  });
});
