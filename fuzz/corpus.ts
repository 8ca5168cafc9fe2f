/**
 * Seeds for the fuzzer, from the real QEMU streams recorded under .cache/fixtures (7.2 and
 * 10.0; plain, xbzrle, legacy compress and block migration), each cut down to a few pages per
 * section part so a mutated input decodes in about a millisecond: every section, device state
 * and vmdesc is QEMU's own, only most RAM pages and disk chunks are left out.
 */
import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createDecoder, encodeBuffer, encodedLength, type MigrationRecord } from '../src/codec.js';
import { FIXTURES_DIR, STREAM_FILE } from '../test/fixtures/meta.js';
import { startOffsets, type SeedInput } from './mutate.js';

/** Fixtures whose streams seed the fuzzer: one of each record family and both QEMU releases. */
export const SEED_FIXTURES = ['idle', 'xbzrle', 'compress', 'block', 'q35-10.0'] as const;

/** RAM page records kept per section part and in all; disk chunks are 1 MiB, so one. */
const PAGES_PER_PART = 2;
const PAGES_PER_STREAM = 24;
const DISK_CHUNKS_PER_STREAM = 1;

export interface StreamSeed extends SeedInput {
  /** The records, for targets that build on them (vmdesc, containers). */
  readonly records: readonly MigrationRecord[];
}

/** One fixture's stream, cut down as described above, re-encoded. */
export async function streamSeed(fixture: string): Promise<StreamSeed> {
  const path = join(FIXTURES_DIR, fixture, STREAM_FILE);
  if (!existsSync(path)) {
    throw new Error(`fuzz: ${path} is missing: the fixtures are recorded by the test suite's global set-up (run "npm test" once)`);
  }
  const decoder = createDecoder();
  const kept: MigrationRecord[] = [];
  let pagesInPart = 0;
  let pages = 0;
  let diskChunks = 0;
  const keep = (record: MigrationRecord): void => {
    switch (record.type) {
      case 'section-start':
      case 'section-resume':
        pagesInPart = 0;
        kept.push(record);
        return;
      case 'ram-page':
      case 'ram-zero':
      case 'ram-xbzrle':
      case 'ram-compressed':
        // CONTINUE names the block of the previous page, which may be one left out.
        if (pagesInPart++ < PAGES_PER_PART && pages++ < PAGES_PER_STREAM) kept.push(copyData({ ...record, continued: false }));
        return;
      case 'block-data':
      case 'block-zero':
        if (diskChunks++ < DISK_CHUNKS_PER_STREAM) kept.push(copyData(record));
        return;
      default:
        kept.push(copyData(record));
    }
  };
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    for (const record of decoder.push(chunk as Buffer)) keep(record);
  }
  for (const record of decoder.end()) keep(record);
  const bytes = encodeBuffer(kept);
  return { name: fixture, bytes, boundaries: startOffsets(kept.map(encodedLength)), records: kept };
}

/** Records may be views into the decoder's 1 MiB input chunks: keep only their own bytes. */
function copyData<R extends MigrationRecord>(record: R): R {
  const data = (record as { data?: unknown }).data;
  if (Buffer.isBuffer(data)) return { ...record, data: Buffer.from(data) };
  if (record.type === 'vmdesc') return { ...record, json: Buffer.from(record.json) };
  return record;
}

export async function streamSeeds(): Promise<StreamSeed[]> {
  const seeds: StreamSeed[] = [];
  for (const fixture of SEED_FIXTURES) seeds.push(await streamSeed(fixture));
  return seeds;
}
