/** readerGone: a pipe's writing end knows when its reader went, without writing to it. */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { nativeBinding, readerGone } from '../../src/native.js';
import { ArgumentError } from '../../src/stream/errors.js';

describe('readerGone', () => {
  test('false while the pipe has a reader, true once the reader closed it', () => {
    const fifo = join(mkdtempSync(join(tmpdir(), 'migstream-fd-')), 'fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = openSync(fifo, constants.O_WRONLY);
    try {
      expect(readerGone(writer)).toBe(false);
      closeSync(reader);
      expect(readerGone(writer)).toBe(true);
    } finally {
      closeSync(writer);
    }
  });

  test('false for a regular file and for a descriptor that is not open', () => {
    const fd = openSync(join(mkdtempSync(join(tmpdir(), 'migstream-fd-')), 'file'), 'w');
    expect(readerGone(fd)).toBe(false);
    closeSync(fd);
    expect(readerGone(fd)).toBe(false);
  });

  test('a negative or fractional descriptor is an ArgumentError', () => {
    expect(() => readerGone(-1)).toThrow(ArgumentError);
    expect(() => readerGone(1.5)).toThrow(ArgumentError);
    // The addon checks again when called directly.
    const raw = nativeBinding() as unknown as { readerGone: (...args: unknown[]) => boolean };
    expect(() => raw.readerGone(-1)).toThrow(ArgumentError);
    expect(() => raw.readerGone('1')).toThrow(ArgumentError);
    expect(() => raw.readerGone()).toThrow(ArgumentError);
  });
});
