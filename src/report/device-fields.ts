/**
 * Field-level view of the device-state sections of a stream, once its vmdesc is known (the
 * vmdesc arrives last, so the bodies are kept until then; they are small, ~200 KiB on a pc).
 */
import type { DeviceStateRecord, SectionStartRecord, VmdescRecord } from '../stream/records.js';
import { VmdescError } from '../stream/errors.js';
import { decodeDeviceState, parseVmdesc, type DecodedField } from '../stream/vmstate.js';

export interface DeviceFields {
  sectionId: number;
  idstr: string;
  instanceId: number;
  /** null when the vmdesc has no entry for the section, or the device has no VMStateDescription. */
  vmsdName: string | null;
  exact: boolean;
  problem?: string;
  fields: DecodedField[];
}

export class DeviceFieldCollector {
  private readonly bodies: { sectionId: number; idstr: string; instanceId: number; data: Buffer }[] = [];
  private readonly instances = new Map<number, number>();
  private vmdesc: VmdescRecord | undefined;
  /** Why the stream's vmdesc could not be used, once result() has read it. */
  vmdescProblem: string | undefined;

  /** Feed every record of the stream. */
  add(record: { readonly type: string }): void {
    if (record.type === 'section-start') {
      const start = record as SectionStartRecord;
      this.instances.set(start.sectionId, start.instanceId);
    } else if (record.type === 'device-state') {
      const { sectionId, idstr, data } = record as DeviceStateRecord;
      this.bodies.push({ sectionId, idstr, instanceId: this.instances.get(sectionId) ?? 0, data: Buffer.from(data) });
    } else if (record.type === 'vmdesc') {
      this.vmdesc = record as VmdescRecord;
    }
  }

  /** Decoded devices, or null when the stream had no usable vmdesc (see vmdescProblem). */
  result(): DeviceFields[] | null {
    if (this.vmdesc === undefined) return null;
    let devices;
    try {
      devices = parseVmdesc(this.vmdesc.json).devices;
    } catch (error) {
      if (!(error instanceof VmdescError)) throw error;
      this.vmdescProblem = error.message;
      return null;
    }
    const byKey = new Map(devices.map((device) => [`${device.name}\0${device.instance_id}`, device]));
    return this.bodies.map(({ sectionId, idstr, instanceId, data }) => {
      const device = byKey.get(`${idstr}\0${instanceId}`);
      if (device === undefined) {
        return { sectionId, idstr, instanceId, vmsdName: null, exact: false, problem: 'not described in the vmdesc', fields: [] };
      }
      const decoded = decodeDeviceState(data, device);
      return { sectionId, idstr, instanceId, vmsdName: device.vmsd_name === '' ? null : device.vmsd_name, ...decoded };
    });
  }
}
