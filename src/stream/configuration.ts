/**
 * The QEMU_VM_CONFIGURATION section: the "configuration" vmstate of savevm.c
 * (vmstate_configuration): be32 len, machine type[len], then optional subsections
 * `u8 0x05, u8 len, name, be32 version, fields` for target-page-bits, capabilities and uuid.
 */
import { FramingError, LimitExceededError } from './errors.js';
import type { ByteReader } from './reader.js';
import type { ConfigurationRecord, ConfigurationSubsection } from './records.js';
import { SectionType } from './records.js';
import type { ByteWriter } from './writer.js';

/** Longest machine type name accepted (QEMU's are ~20 bytes). */
const MAX_MACHINE_NAME = 4096;
/** More capabilities than QEMU has (about 30) is not a real stream. */
const MAX_CAPABILITIES = 256;

const CONTEXT = 'configuration section';

/** Reads the configuration body (after the 0x07 type byte). */
export function readConfiguration(reader: ByteReader): ConfigurationRecord {
  const nameLength = reader.u32();
  if (nameLength > MAX_MACHINE_NAME) {
    throw new LimitExceededError(`machine type length ${nameLength} is absurd`, {
      offset: reader.markOffset,
      context: CONTEXT,
      expected: `at most ${MAX_MACHINE_NAME} bytes`,
      actual: nameLength,
    });
  }
  const machineType = reader.bytes(nameLength).toString('latin1');
  const subsections: ConfigurationSubsection[] = [];
  while (reader.peekU8() === SectionType.SUBSECTION) {
    const at = reader.offset;
    reader.u8();
    const name = reader.bytes(reader.u8()).toString('latin1');
    const version = reader.u32();
    switch (name) {
      case 'configuration/target-page-bits':
        subsections.push({ name, version, targetPageBits: reader.u32() });
        break;
      case 'configuration/capabilities': {
        const count = reader.u32();
        if (count > MAX_CAPABILITIES) {
          throw new LimitExceededError(`capability count ${count} is absurd`, {
            offset: at,
            context: CONTEXT,
            expected: `at most ${MAX_CAPABILITIES}`,
            actual: count,
          });
        }
        const capabilities: string[] = [];
        for (let i = 0; i < count; i++) capabilities.push(reader.bytes(reader.u8()).toString('latin1'));
        subsections.push({ name, version, capabilities });
        break;
      }
      case 'configuration/uuid':
        subsections.push({ name, version, uuid: Buffer.from(reader.bytes(16)) });
        break;
      default:
        throw new FramingError(`unknown configuration subsection "${name}"`, {
          offset: at,
          context: CONTEXT,
          expected: 'target-page-bits, capabilities or uuid',
          actual: name,
        });
    }
  }
  return { type: 'configuration', machineType, subsections };
}

export function writeConfiguration(record: ConfigurationRecord, writer: ByteWriter): void {
  const name = Buffer.from(record.machineType, 'latin1');
  writer.u8(SectionType.CONFIGURATION);
  writer.u32(name.length);
  writer.bytes(name);
  for (const sub of record.subsections) {
    writer.u8(SectionType.SUBSECTION);
    writer.shortString(sub.name);
    writer.u32(sub.version);
    switch (sub.name) {
      case 'configuration/target-page-bits':
        writer.u32(sub.targetPageBits);
        break;
      case 'configuration/capabilities':
        writer.u32(sub.capabilities.length);
        for (const capability of sub.capabilities) writer.shortString(capability);
        break;
      case 'configuration/uuid':
        writer.bytes(sub.uuid);
        break;
    }
  }
}

/** Page size and validated capabilities announced by a configuration record. */
export function configurationParameters(record: ConfigurationRecord): {
  targetPageBits?: number;
  capabilities: string[];
} {
  let targetPageBits: number | undefined;
  const capabilities: string[] = [];
  for (const sub of record.subsections) {
    if (sub.name === 'configuration/target-page-bits') targetPageBits = sub.targetPageBits;
    if (sub.name === 'configuration/capabilities') capabilities.push(...sub.capabilities);
  }
  return targetPageBits === undefined ? { capabilities } : { targetPageBits, capabilities };
}
