/**
 * Where guest-physical memory maps 1:1 onto RAMBlocks, so a `pmemsave` dump can be compared
 * with RAM pages decoded from a stream.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { ArgumentError } from '../stream/errors.js';
import type { QmpExecutor } from './qmp.js';
import { pmemsave } from './migration.js';

export interface MemoryRange {
  /** RAMBlock id as it appears in the stream (e.g. "pc.ram", "mem1"). */
  idstr: string;
  guestPhysAddr: number;
  offsetInBlock: number;
  length: number;
}

/** A range plus its position in a dump made by concatenating all ranges in order. */
export interface DumpRange extends MemoryRange {
  dumpOffset: number;
}

const LEGACY_VGA_START = 0xa0000;
const HIGH_MEMORY_START = 0x100000;
// Below this both pc-i440fx and q35 map all of pc.ram under 4 GiB; above it the split
// depends on machine type and options, which these fixtures never need.
const MAX_SIMPLE_RAM = 0x80000000;

interface MemorySizeSummary {
  'base-memory': number;
  'plugged-memory'?: number;
}

interface MemoryDevice {
  type: string;
  data: { addr?: number; size?: number; memdev?: string; id?: string };
}

/**
 * pc.ram below the legacy VGA/ROM hole and from 1 MiB up, then every pc-dimm / nvdimm at the
 * address QEMU gave it. The 0xa0000–0xfffff hole is left out: what reads there depends on
 * VGA and PAM state, not on pc.ram.
 */
export async function guestMemoryLayout(vm: QmpExecutor): Promise<MemoryRange[]> {
  const summary = await vm.execute<MemorySizeSummary>('query-memory-size-summary');
  const ram = summary['base-memory'];
  if (ram > MAX_SIMPLE_RAM) {
    throw new ArgumentError(`guestMemoryLayout: ${ram} bytes of base memory is above the supported ${MAX_SIMPLE_RAM}`);
  }
  const ranges: MemoryRange[] = [{ idstr: 'pc.ram', guestPhysAddr: 0, offsetInBlock: 0, length: Math.min(ram, LEGACY_VGA_START) }];
  if (ram > HIGH_MEMORY_START) {
    ranges.push({ idstr: 'pc.ram', guestPhysAddr: HIGH_MEMORY_START, offsetInBlock: HIGH_MEMORY_START, length: ram - HIGH_MEMORY_START });
  }
  const devices = await vm.execute<MemoryDevice[]>('query-memory-devices');
  for (const device of devices) {
    const { addr, size, memdev } = device.data;
    if ((device.type !== 'dimm' && device.type !== 'nvdimm') || addr === undefined || size === undefined || !memdev) continue;
    // A memory backend's RAMBlock is named after the backend object's id.
    const idstr = memdev.slice(memdev.lastIndexOf('/') + 1);
    ranges.push({ idstr, guestPhysAddr: addr, offsetInBlock: 0, length: size });
  }
  return ranges;
}

export function withDumpOffsets(ranges: readonly MemoryRange[]): DumpRange[] {
  let dumpOffset = 0;
  return ranges.map((range) => {
    const placed = { ...range, dumpOffset };
    dumpOffset += range.length;
    return placed;
  });
}

/**
 * Writes the ranges, in order, into one file at `path` (pmemsave writes whole files, so each
 * range goes through a temporary file next to `path`). Returns the ranges with dump offsets.
 */
export async function dumpGuestMemory(vm: QmpExecutor, ranges: readonly MemoryRange[], path: string): Promise<DumpRange[]> {
  const out = createWriteStream(path);
  try {
    for (const [index, range] of ranges.entries()) {
      const part = `${path}.part${index}`;
      await pmemsave(vm, range.guestPhysAddr, range.length, part);
      await pipeline(createReadStream(part), out, { end: false });
      await rm(part);
    }
  } finally {
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
  return withDumpOffsets(ranges);
}
