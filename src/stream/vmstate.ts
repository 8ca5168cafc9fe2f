/**
 * Field-by-field reading of device-state sections, guided by the vmdesc JSON.
 *
 * vmstate bodies have no per-field framing, but the vmdesc that QEMU appends after EOF records,
 * for every field it wrote, the number of bytes written (vmsd_desc_field_end in vmstate.c),
 * including fields with custom put() code. Walking those sizes splits a body into fields;
 * subsections are `0x05, u8 len, name, be32 version` then their fields
 * (vmstate_subsection_save). This is for inspection: the bytes themselves always pass through
 * unchanged, and a body the description does not fit is reported as such, not guessed at.
 */

/** One field as the vmdesc describes it. */
export interface VmdescField {
  name: string;
  type: string;
  size: number;
  index?: number;
  /** Present on "compressed" arrays: the entry describes element 0, all have `size`. */
  array_len?: number;
  struct?: VmdescState;
}

export interface VmdescState {
  vmsd_name: string;
  version: number;
  fields?: VmdescField[];
  subsections?: VmdescState[];
}

export interface VmdescDevice extends VmdescState {
  name: string;
  instance_id: number;
}

export interface Vmdesc {
  page_size: number;
  devices: VmdescDevice[];
}

export interface DecodedField {
  /** Dotted path, e.g. "timer/dticks.dticks_offset". */
  path: string;
  type: string;
  offset: number;
  size: number;
  /** Scalars as numbers (bigint past 2^53), booleans; other types as hex. */
  value: number | bigint | boolean | string;
}

export interface DecodedDeviceState {
  fields: DecodedField[];
  /** True when the description consumed exactly the body. */
  exact: boolean;
  /** Why decoding stopped early, if it did. */
  problem?: string;
}

export function parseVmdesc(json: Buffer | string): Vmdesc {
  const parsed = JSON.parse(typeof json === 'string' ? json : json.toString('utf8')) as Partial<Vmdesc>;
  if (!Array.isArray(parsed.devices)) throw new TypeError('vmdesc has no "devices" array');
  return { page_size: parsed.page_size ?? 0, devices: parsed.devices };
}

const HEX_PREVIEW = 64;

function scalar(body: Buffer, offset: number, size: number, type: string): DecodedField['value'] {
  if (type === 'bool' && size === 1) return body[offset] !== 0;
  const unsigned = /^uint(8|16|32|64)\b/.test(type);
  const signed = /^int(8|16|32|64)\b/.test(type);
  if ((unsigned || signed) && (size === 1 || size === 2 || size === 4 || size === 8)) {
    if (size === 8) {
      const big = signed ? body.readBigInt64BE(offset) : body.readBigUInt64BE(offset);
      return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
    }
    return signed ? body.readIntBE(offset, size) : body.readUIntBE(offset, size);
  }
  const end = offset + Math.min(size, HEX_PREVIEW);
  return body.toString('hex', offset, end) + (size > HEX_PREVIEW ? '…' : '');
}

class Walker {
  readonly fields: DecodedField[] = [];
  offset = 0;
  constructor(private readonly body: Buffer) {}

  state(state: VmdescState, prefix: string): string | undefined {
    for (const field of state.fields ?? []) {
      const count = field.array_len ?? 1;
      const path = `${prefix}${field.name}${field.index !== undefined ? `[${field.index}]` : ''}`;
      for (let i = 0; i < count; i++) {
        const size = field.size;
        if (!Number.isSafeInteger(size) || size < 0 || this.offset + size > this.body.length) {
          return `field ${path} of ${size} bytes runs past the body (${this.body.length} bytes)`;
        }
        const name = count > 1 ? `${path}[${i}]` : path;
        if (field.struct !== undefined && i === 0 && count === 1) {
          const start = this.offset;
          const problem = this.state(field.struct, `${name}.`);
          if (problem !== undefined) return problem;
          if (this.offset !== start + size) return `struct ${name} described as ${size} bytes, fields cover ${this.offset - start}`;
        } else {
          this.fields.push({ path: name, type: field.type, offset: this.offset, size, value: scalar(this.body, this.offset, size, field.type) });
          this.offset += size;
        }
      }
    }
    for (const sub of state.subsections ?? []) {
      // u8 0x05, u8 len, name, be32 version_id
      const headerLength = 1 + 1 + sub.vmsd_name.length + 4;
      if (this.offset + headerLength > this.body.length || this.body[this.offset] !== 0x05) {
        return `subsection ${sub.vmsd_name} expected at offset ${this.offset}`;
      }
      const name = this.body.toString('latin1', this.offset + 2, this.offset + 2 + this.body[this.offset + 1]!);
      if (name !== sub.vmsd_name) return `subsection ${sub.vmsd_name} expected, found ${name}`;
      this.offset += headerLength;
      const problem = this.state(sub, `${sub.vmsd_name}.`);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
}

/** Splits a device-state body into fields using its vmdesc entry. */
export function decodeDeviceState(body: Buffer, device: VmdescState): DecodedDeviceState {
  const walker = new Walker(body);
  const problem = walker.state(device, '');
  if (problem !== undefined) return { fields: walker.fields, exact: false, problem };
  if (walker.offset !== body.length) {
    return { fields: walker.fields, exact: false, problem: `${body.length - walker.offset} bytes left after the described fields` };
  }
  return { fields: walker.fields, exact: true };
}
