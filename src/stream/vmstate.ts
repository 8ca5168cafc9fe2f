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
import { VmdescError } from './errors.js';

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
  /** '' for a device saved without a VMStateDescription. */
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

/**
 * Deepest struct/subsection nesting accepted. QEMU's deepest (virtio devices, e1000e) is
 * under 10; the bound keeps a hostile vmdesc from overflowing the stack of the walk.
 */
export const MAX_VMDESC_DEPTH = 32;

/**
 * Parses and checks a vmdesc: the JSON comes from the sender, so every value the walk reads
 * is checked for the type QEMU writes (vmstate_save_state_v, vmsd_desc_field_start/end).
 */
export function parseVmdesc(json: Buffer | string): Vmdesc {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof json === 'string' ? json : json.toString('utf8'));
  } catch (error) {
    throw new VmdescError('text', `not JSON (${(error as Error).message})`);
  }
  const top = object(parsed, 'top level');
  const pageSize = top.page_size ?? 0;
  if (!isCount(pageSize)) throw new VmdescError('page_size', `not a non-negative integer: ${brief(pageSize)}`);
  const devices = list(top.devices, 'devices').map((entry, i) => {
    const path = `devices[${i}]`;
    const device = object(entry, path);
    const name = text(device.name, `${path}.name`);
    const instanceId = device.instance_id;
    if (!isCount(instanceId)) throw new VmdescError(`${path}.instance_id`, `not a non-negative integer: ${brief(instanceId)}`);
    return { name, instance_id: instanceId, ...checkState(device, path, 1) };
  });
  return { page_size: pageSize, devices };
}

function checkState(value: Record<string, unknown>, path: string, depth: number): VmdescState {
  if (depth > MAX_VMDESC_DEPTH) throw new VmdescError(path, `nested deeper than ${MAX_VMDESC_DEPTH} structs and subsections`);
  const version = value.version ?? 0;
  if (typeof version !== 'number') throw new VmdescError(`${path}.version`, `not a number: ${brief(version)}`);
  // A device saved by old-style handlers, not a VMStateDescription, has no vmsd_name (only
  // name, instance_id, size and one "data" field: vmstate_save in migration/savevm.c).
  const unnamedDevice = depth === 1 && value.vmsd_name === undefined;
  const state: VmdescState = { vmsd_name: unnamedDevice ? '' : text(value.vmsd_name, `${path}.vmsd_name`), version };
  if (value.fields !== undefined) {
    state.fields = list(value.fields, `${path}.fields`).map((entry, i) => checkField(entry, `${path}.fields[${i}]`, depth));
  }
  if (value.subsections !== undefined) {
    state.subsections = list(value.subsections, `${path}.subsections`).map((entry, i) => {
      const where = `${path}.subsections[${i}]`;
      return checkState(object(entry, where), where, depth + 1);
    });
  }
  return state;
}

function checkField(entry: unknown, path: string, depth: number): VmdescField {
  const value = object(entry, path);
  const field: VmdescField = { name: text(value.name, `${path}.name`), type: text(value.type, `${path}.type`), size: count(value.size, `${path}.size`) };
  if (value.index !== undefined) field.index = count(value.index, `${path}.index`);
  if (value.array_len !== undefined) field.array_len = count(value.array_len, `${path}.array_len`);
  if (value.struct !== undefined) field.struct = checkState(object(value.struct, `${path}.struct`), `${path}.struct`, depth + 1);
  return field;
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function count(value: unknown, path: string): number {
  if (!isCount(value)) throw new VmdescError(path, `not a non-negative integer: ${brief(value)}`);
  return value;
}

function text(value: unknown, path: string): string {
  if (typeof value !== 'string') throw new VmdescError(path, `not a string: ${brief(value)}`);
  return value;
}

function object(value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new VmdescError(path, `not an object: ${brief(value)}`);
  return value as Record<string, unknown>;
}

function list(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) throw new VmdescError(path, `not an array: ${brief(value)}`);
  return value;
}

function brief(value: unknown): string {
  const shown = JSON.stringify(value) ?? String(value);
  return shown.length > 40 ? `${shown.slice(0, 40)}…` : shown;
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
      const size = field.size;
      if (this.offset + count * size > this.body.length) {
        return `field ${path} of ${count > 1 ? `${count} × ` : ''}${size} bytes runs past the body (${this.body.length} bytes)`;
      }
      if (size === 0 && count > 1) {
        // Elements of no bytes split nothing: one entry, not array_len of them (a vmdesc may say 2^53).
        this.fields.push({ path: `${path}[0..${count - 1}]`, type: field.type, offset: this.offset, size: 0, value: '' });
        continue;
      }
      for (let i = 0; i < count; i++) {
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
