/**
 * The verify hand-over formats we own: the verdict lines the two controllers exchange and the
 * page-hash file send/recv write. Each is built here by hand from its description (the module
 * comments), not with the module's encoder, and hostile variants must be refused by name.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { PageHashFileError, readPageHashFile } from '../../src/migrate/stream-hashes.js';
import { decodeVerdict, MAX_VERDICT_LINE, VerdictLineSplitter, VerdictProtocolError, verdictProblem } from '../../src/migrate/verdict-wire.js';

const dir = mkdtempSync(join(tmpdir(), 'migstream-verdict-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const DIGEST = 'ab'.repeat(32);

describe('verdict lines', () => {
  const good = { type: 'destination-verdict', resuming: false, digest: DIGEST, pagesCompared: 10, mismatches: 1, first: [{ idstr: 'pc.ram', offset: 4096, guestPhysAddr: 4096 }], error: null };

  test('a hand-written destination verdict decodes to its fields', () => {
    expect(decodeVerdict(JSON.stringify(good))).toEqual(good);
  });

  test.each([
    ['not JSON', '{"type":', /not JSON/],
    ['an array', '[1]', /unknown verdict type/],
    ['an unknown type', JSON.stringify({ ...good, type: 'hello' }), /unknown verdict type/],
    ['negative counts', JSON.stringify({ ...good, mismatches: -1 }), /page counts/],
    ['a short digest', JSON.stringify({ ...good, digest: 'abc' }), /sha256/],
    ['pages without offsets', JSON.stringify({ ...good, first: [{ idstr: 'pc.ram' }] }), /pages/],
    ['too many pages', JSON.stringify({ ...good, first: Array(65).fill(good.first[0]) }), /pages/],
    ['no resuming flag', JSON.stringify({ ...good, resuming: undefined }), /resumes/],
  ])('%s is a VerdictProtocolError', (_name, line, pattern) => {
    expect(() => decodeVerdict(line)).toThrow(VerdictProtocolError);
    expect(() => decodeVerdict(line)).toThrow(pattern);
  });

  test('lines split across reads are whole; an endless line is refused at the bound', () => {
    const splitter = new VerdictLineSplitter();
    const text = `${JSON.stringify(good)}\n`;
    expect(splitter.push(Buffer.from(text.slice(0, 7)))).toEqual([]);
    expect(splitter.push(Buffer.from(text.slice(7)))).toEqual([text.slice(0, -1)]);
    const endless = new VerdictLineSplitter();
    expect(() => endless.push(Buffer.alloc(MAX_VERDICT_LINE + 1, 0x41))).toThrow(/longer than/);
  });

  test('a verdict is good only when it compared pages, found none different and saw the same image', () => {
    const clean = { digest: DIGEST, pagesCompared: 10, mismatches: 0, first: [], error: null };
    expect(verdictProblem('source', clean, DIGEST)).toBeNull();
    expect(verdictProblem('source', { ...clean, pagesCompared: 0 }, DIGEST)).toMatch(/no pages/);
    expect(verdictProblem('source', { ...clean, digest: 'cd'.repeat(32) }, DIGEST)).toMatch(/different stream image/);
    expect(verdictProblem('source', { ...clean, error: 'pmemsave failed' }, DIGEST)).toBe('source: pmemsave failed');
    expect(verdictProblem('destination', { ...clean, mismatches: 1, first: [{ idstr: 'pc.ram', offset: 0x2000, guestPhysAddr: 0x2000 }] }, DIGEST)).toBe(
      "destination: 1 of 10 pages differ from the stream's image; first at pc.ram+0x2000 (guest-physical 0x2000)",
    );
  });
});

describe('page-hash files', () => {
  /** Two pages of pc.ram, hashes 1 and 2, as the file's description says: LE u64, base64, sha256 digest. */
  function handMade(): Record<string, unknown> {
    const hashes = Buffer.alloc(16);
    hashes.writeBigUInt64LE(1n, 0);
    hashes.writeBigUInt64LE(2n, 8);
    const digest = createHash('sha256').update('pc.ram\u00008192\u0000').update(hashes).digest('hex');
    return { format: 'migstream-page-hashes', version: 1, pageSize: 4096, blocks: [{ idstr: 'pc.ram', usedLength: 8192, hashes: hashes.toString('base64') }], digest };
  }
  const write = (name: string, body: unknown): string => {
    const path = join(dir, name);
    writeFileSync(path, typeof body === 'string' ? body : JSON.stringify(body));
    return path;
  };

  test('a hand-made file reads back its hashes and digest', () => {
    const read = readPageHashFile(write('good.json', handMade()));
    expect(read.pageSize).toBe(4096);
    expect([...read.blocks[0]!.hashes]).toEqual([1n, 2n]);
    expect(read.digest).toBe(handMade().digest);
  });

  test.each([
    ['not JSON', 'garbage', /not JSON/],
    ['another format', { ...handMade(), format: 'other' }, /not a version 1/],
    ['a bad page size', { ...handMade(), pageSize: 3000 }, /power of two/],
    ['hashes that do not cover the block', { ...handMade(), blocks: [{ idstr: 'pc.ram', usedLength: 3 * 4096, hashes: Buffer.alloc(16).toString('base64') }] }, /holds 2 hashes/],
    ['a changed hash', { ...handMade(), blocks: [{ idstr: 'pc.ram', usedLength: 8192, hashes: Buffer.alloc(16, 7).toString('base64') }] }, /digest does not match/],
    ['the transport said it could not follow', { format: 'migstream-page-hashes', version: 1, error: 'an XBZRLE delta' }, /XBZRLE/],
  ])('%s is a PageHashFileError', (name, body, pattern) => {
    const path = write(`${name.replace(/ /g, '-')}.json`, body);
    expect(() => readPageHashFile(path)).toThrow(PageHashFileError);
    expect(() => readPageHashFile(path)).toThrow(pattern);
  });
});
