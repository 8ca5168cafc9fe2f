import { deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ZlibPageError } from '../../src/ram/errors.js';
import { deflatePage, inflatePage } from '../../src/ram/zlib-page.js';
import { DecodeError } from '../../src/stream/errors.js';
import { PAGE, pattern, zlibPage } from '../helpers/ram-bytes.js';
import { thrown } from './feed.js';

describe('zlib pages', () => {
  it('inflates a page deflated as do_compress_ram_page does', () => {
    for (const page of [pattern(1), Buffer.alloc(PAGE), Buffer.alloc(PAGE, 0x41)]) {
      expect(inflatePage(zlibPage(page), PAGE).equals(page)).toBe(true);
      expect(inflatePage(deflatePage(page), PAGE).equals(page)).toBe(true);
      expect(deflatePage(page).equals(zlibPage(page))).toBe(true);
    }
  });

  it('ignores bytes after the end of the zlib stream, as inflate does', () => {
    const data = Buffer.concat([zlibPage(pattern(2)), Buffer.from([1, 2, 3])]);
    expect(inflatePage(data, PAGE).equals(pattern(2))).toBe(true);
  });

  it('works with other page sizes', () => {
    const page = pattern(3, 65536);
    expect(inflatePage(deflatePage(page, 6), 65536).equals(page)).toBe(true);
  });

  const bad: [string, Buffer, RegExp][] = [
    ['a short page', deflateSync(Buffer.alloc(100)), /inflates to 100 bytes, expected 4096/],
    ['a long page', deflateSync(Buffer.alloc(PAGE + 1)), /more than one page/],
    ['a truncated stream', zlibPage(pattern(4)).subarray(0, 100), /not a complete zlib stream/],
    ['garbage', Buffer.from('not zlib at all'), /not a complete zlib stream/],
    ['nothing', Buffer.alloc(0), /not a complete zlib stream/],
  ];
  for (const [what, data, message] of bad) {
    it(`rejects ${what}`, () => {
      const error = thrown(() => inflatePage(data, PAGE, { offset: 5, context: 'test page' })) as ZlibPageError;
      expect(error).toBeInstanceOf(ZlibPageError);
      expect(error).toBeInstanceOf(DecodeError);
      expect(error.code).toBe('ERR_ZLIB_PAGE');
      expect(error.offset).toBe(5);
      expect(error.message).toMatch(message);
    });
  }
});
