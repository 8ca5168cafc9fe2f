/**
 * Records of the stream framing (migration/savevm.c). Section bodies add their own records
 * (src/ram/records.ts, src/block/records.ts).
 *
 * Each record holds exactly what is needed to write its bytes back: decoding and re-encoding a
 * stream gives the same bytes.
 */

/** Section type bytes, migration/savevm.h. */
export const SectionType = {
  EOF: 0x00,
  START: 0x01,
  PART: 0x02,
  END: 0x03,
  FULL: 0x04,
  SUBSECTION: 0x05,
  VMDESCRIPTION: 0x06,
  CONFIGURATION: 0x07,
  COMMAND: 0x08,
  FOOTER: 0x7e,
} as const;

export const FILE_MAGIC = 0x5145564d; // "QEVM"
export const FILE_VERSION = 3;

/** QEMU_VM_COMMAND sub-commands (migration/savevm.c, enum qemu_vm_cmd). */
export const CommandName: Record<number, string> = {
  1: 'OPEN_RETURN_PATH',
  2: 'PING',
  3: 'POSTCOPY_ADVISE',
  4: 'POSTCOPY_LISTEN',
  5: 'POSTCOPY_RUN',
  6: 'POSTCOPY_RAM_DISCARD',
  7: 'PACKAGED',
  8: 'ENABLE_COLO',
  9: 'POSTCOPY_RESUME',
  10: 'RECV_BITMAP',
};
export const MIG_CMD_PACKAGED = 7;

export interface HeaderRecord {
  readonly type: 'header';
  readonly version: number;
}

/** Subsections of the "configuration" vmstate (savevm.c vmstate_configuration). */
export type ConfigurationSubsection =
  | { readonly name: 'configuration/target-page-bits'; readonly version: number; readonly targetPageBits: number }
  | { readonly name: 'configuration/capabilities'; readonly version: number; readonly capabilities: readonly string[] }
  | { readonly name: 'configuration/uuid'; readonly version: number; readonly uuid: Buffer };

export interface ConfigurationRecord {
  readonly type: 'configuration';
  /** Machine type, e.g. "pc-i440fx-7.2". */
  readonly machineType: string;
  readonly subsections: readonly ConfigurationSubsection[];
}

/** SECTION_START or SECTION_FULL header. */
export interface SectionStartRecord {
  readonly type: 'section-start';
  readonly kind: 'start' | 'full';
  readonly sectionId: number;
  readonly idstr: string;
  readonly instanceId: number;
  readonly versionId: number;
}

/** SECTION_PART or SECTION_END header; `idstr` is resolved from the section's START. */
export interface SectionResumeRecord {
  readonly type: 'section-resume';
  readonly kind: 'part' | 'end';
  readonly sectionId: number;
  readonly idstr: string;
}

/** Body of a section with no body codec (device state), kept as opaque bytes. */
export interface DeviceStateRecord {
  readonly type: 'device-state';
  readonly sectionId: number;
  readonly idstr: string;
  readonly data: Buffer;
}

export interface SectionFooterRecord {
  readonly type: 'section-footer';
  readonly sectionId: number;
}

export interface CommandRecord {
  readonly type: 'command';
  readonly command: number;
  readonly data: Buffer;
}

/** Raw bytes of a MIG_CMD_PACKAGED payload (a nested stream), in bounded pieces. */
export interface PackagedDataRecord {
  readonly type: 'packaged-data';
  readonly data: Buffer;
}

export interface EofRecord {
  readonly type: 'eof';
}

export interface VmdescRecord {
  readonly type: 'vmdesc';
  /** The JSON text exactly as sent. */
  readonly json: Buffer;
}

export type FramingRecord =
  HeaderRecord | ConfigurationRecord | SectionStartRecord | SectionResumeRecord | DeviceStateRecord | SectionFooterRecord | CommandRecord | PackagedDataRecord | EofRecord | VmdescRecord;
