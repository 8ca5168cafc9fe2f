import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
