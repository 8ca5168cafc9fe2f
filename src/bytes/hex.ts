/** The hex formats of every message: one place, so a value reads the same in every error. */

/** `0x1f`: a byte, flags, an id. */
export function hex(value: number): string {
  return `0x${value.toString(16)}`;
}

/** `0x0000001f`: a 32-bit checksum, all eight digits. */
export function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

/** `0x000000010000001f`: a be64 word from its two halves (QEMU's ram and block words). */
export function wordHex(high: number, low: number): string {
  return `0x${high.toString(16).padStart(8, '0')}${low.toString(16).padStart(8, '0')}`;
}
