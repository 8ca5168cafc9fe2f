/**
 * The legacy `compress` capability's page codec (QEMU 7.2 migration/ram.c):
 * do_compress_ram_page deflates one page into one complete zlib stream (zlib defaults,
 * `compress-level`, 1 unless set); the destination's qemu_uncompress_data inflates it into the
 * page with avail_out = TARGET_PAGE_SIZE and accepts only Z_STREAM_END.
 *
 * Two deliberate differences from QEMU's destination:
 *   - QEMU accepts a stream that ends before filling the page (it writes the shorter prefix);
 *     its source never sends one, so we require exactly one page.
 *   - QEMU reports a bad stream only after the section (wait_for_decompress_done), and only
 *     with decompress-error-check on; we throw at the page.
 * Bytes after the end of the zlib stream are ignored, by QEMU's inflate and by node:zlib alike.
 */
import { deflateSync, inflateSync } from 'node:zlib';
import { ZlibPageError, type PayloadLocation } from './errors.js';

/** QEMU's default `compress-level`. */
export const DEFAULT_COMPRESS_LEVEL = 1;

/** Inflates one COMPRESS_PAGE payload into a new page of exactly `pageSize` bytes. */
export function inflatePage(data: Uint8Array, pageSize: number, where?: PayloadLocation): Buffer {
  let page: Buffer;
  try {
    page = inflateSync(data, { maxOutputLength: pageSize });
  } catch (error) {
    const reason = (error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' ? `inflates to more than one page (${pageSize} bytes)` : `is not a complete zlib stream (${(error as Error).message})`;
    throw new ZlibPageError(`compressed page of ${data.length} bytes ${reason}`, where, error);
  }
  if (page.length !== pageSize) {
    throw new ZlibPageError(`compressed page of ${data.length} bytes inflates to ${page.length} bytes, expected ${pageSize}`, where);
  }
  return page;
}

/** Deflates one page as do_compress_ram_page does (one zlib stream, given level). */
export function deflatePage(page: Uint8Array, level = DEFAULT_COMPRESS_LEVEL): Buffer {
  return deflateSync(page, { level });
}
