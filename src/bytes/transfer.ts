/** Zero-copy hand-over of bytes between threads. */

/**
 * `data` as a view of an ArrayBuffer it alone uses, and that buffer for postMessage's transfer
 * list. Posting a view without transferring copies its whole ArrayBuffer (a 1 MiB read chunk
 * for a 4 KiB slice), and Node's pooled small buffers cannot be transferred: both get copied
 * once here instead.
 */
export function transferable(data: Uint8Array): [Uint8Array, ArrayBuffer[]] {
  const buffer = data.buffer;
  if (buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === buffer.byteLength) {
    return [data, [buffer]];
  }
  const copy = Buffer.allocUnsafeSlow(data.byteLength);
  copy.set(data);
  return [copy, [copy.buffer as ArrayBuffer]];
}

export function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
