/**
 * Builds expected stream bytes by hand, without the production writer, so an encoder bug
 * cannot hide in the oracle.
 */
export class Bytes {
  private readonly parts: number[] = [];

  u8(...values: number[]): this {
    for (const v of values) this.parts.push(v & 0xff);
    return this;
  }
  be16(v: number): this {
    return this.u8(v >>> 8, v);
  }
  be32(v: number): this {
    return this.u8(v >>> 24, v >>> 16, v >>> 8, v);
  }
  be64(v: number | bigint): this {
    const big = BigInt(v);
    return this.be32(Number(big >> 32n)).be32(Number(big & 0xffffffffn));
  }
  raw(data: Uint8Array | number[] | string): this {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    for (const b of bytes) this.parts.push(b);
    return this;
  }
  /** u8 length + string */
  str(text: string): this {
    return this.u8(text.length).raw(text);
  }
  get length(): number {
    return this.parts.length;
  }
  build(): Buffer {
    return Buffer.from(this.parts);
  }
}

export const header = (b: Bytes): Bytes => b.raw('QEVM').be32(3);
export const configuration = (b: Bytes, machine: string): Bytes => b.u8(0x07).be32(machine.length).raw(machine);
export const sectionStart = (b: Bytes, type: 1 | 4, id: number, idstr: string, instance: number, version: number): Bytes => b.u8(type).be32(id).str(idstr).be32(instance).be32(version);
export const footer = (b: Bytes, id: number): Bytes => b.u8(0x7e).be32(id);
