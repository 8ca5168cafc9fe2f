/**
 * A synthetic "busy guest" stream for container tests: several iterations re-sending pages
 * (some changed by XBZRLE deltas, some equal to earlier pages, some text-like, some random),
 * zero and filled pages, a legacy zlib page, a block section with disk chunks, device state,
 * EOF and vmdesc. Built by hand from the byte helpers (no production encoder). Big enough for
 * many frames at a small frame size, small enough to decompress dozens of times per test.
 */
import * as blk from './block-bytes.js';
import { Bytes, configuration, footer, header, sectionStart } from './stream-bytes.js';
import { PAGE, compressedBytes, delta, eosBytes, memSizeBytes, pageBytes, pattern, xbzrleBytes, zeroBytes, zlibPage } from './ram-bytes.js';

export interface BusyStream {
  bytes: Buffer;
  /** Pages of pc.ram. */
  pages: number;
}

/** A page of repeated text, compressible like guest page cache. */
function textPage(seed: number): Buffer {
  return Buffer.from(`page ${seed}: the quick brown fox jumps over the lazy dog. `.repeat(Math.ceil(PAGE / 40)).slice(0, PAGE), 'latin1');
}

export function busyStream(options: { pages?: number; iterations?: number; disk?: boolean } = {}): BusyStream {
  const pages = options.pages ?? 512;
  const iterations = options.iterations ?? 4;
  let b = new Bytes();
  const parts: Buffer[] = [];
  const flush = (): void => {
    parts.push(b.build());
    b = new Bytes();
  };
  header(b);
  configuration(b, 'pc-i440fx-7.2');
  sectionStart(b, 1, 2, 'ram', 0, 4)
    .raw(
      memSizeBytes([
        { idstr: 'pc.ram', length: pages * PAGE },
        { idstr: 'vga.vram', length: 16 * PAGE },
      ]),
    )
    .raw(eosBytes());
  footer(b, 2);
  if (options.disk ?? true) {
    sectionStart(b, 1, 3, 'block', 0, 1);
    flush();
    parts.push(blk.dataBytes('disk0', 0, blk.chunk(1)), blk.zeroBytes('disk0', 2048), blk.progressBytes(50));
    parts.push(blk.dataBytes('disk0', 4096, Buffer.alloc(blk.MIB, 0x61)), blk.eosBytes());
    footer(b, 3);
  }
  for (let pass = 0; pass < iterations; pass++) {
    b.u8(pass === iterations - 1 ? 0x03 : 0x02).be32(2);
    let named = false;
    for (let page = 0; page < pages; page++) {
      // Later passes re-send a quarter of the pages, as a dirty-page sync would.
      if (pass > 0 && page % 4 !== pass % 4) continue;
      const block = named ? null : 'pc.ram';
      named = true;
      const offset = page * PAGE;
      switch ((page * 7 + pass) % 9) {
        case 0:
        case 1:
          b.raw(zeroBytes(block, offset));
          break;
        case 2:
          b.raw(pageBytes(block, offset, pattern(page + pass * 1000)));
          break;
        case 3:
          // Equal to an earlier page: a dedup candidate.
          b.raw(pageBytes(block, offset, textPage(page % 5)));
          break;
        case 4:
          b.raw(pass === 0 ? pageBytes(block, offset, textPage(page)) : xbzrleBytes(block, offset, delta([[16 * pass, Buffer.from(`pass ${pass}`)]])));
          break;
        case 5:
          b.raw(compressedBytes(block, offset, zlibPage(textPage(page + 7))));
          break;
        case 6:
          b.raw(zeroBytes(block, offset, 0x5a));
          break;
        default:
          b.raw(pageBytes(block, offset, textPage(page + pass)));
      }
      if (page % 64 === 0) flush();
    }
    b.raw(pageBytes('vga.vram', pass * PAGE, pattern(9000 + pass)));
    b.raw(eosBytes());
    footer(b, 2);
    flush();
  }
  sectionStart(b, 4, 4, 'timer', 0, 2).raw(new Bytes().be64(12345).u8(1).build());
  footer(b, 4);
  sectionStart(b, 4, 5, 'cpu_common', 0, 1).raw([0, 0, 0, 0, 0x7e, 0, 0, 0, 5, 0x42]);
  footer(b, 5);
  b.u8(0x00);
  const json = JSON.stringify({ page_size: 4096, devices: [] });
  b.u8(0x06).be32(json.length).raw(json);
  flush();
  return { bytes: Buffer.concat(parts), pages };
}
