/**
 * Which convergence levers a running QEMU offers, read from QMP itself (what it answers, not
 * its version number), so `migrate` uses each lever only where it exists:
 *
 * | lever                         | QMP                                               | QEMU            |
 * |-------------------------------|---------------------------------------------------|-----------------|
 * | CPU throttle                  | auto-converge + cpu-throttle-* / max-cpu-throttle | all (≥ 2.x)     |
 * | throttle trigger              | throttle-trigger-threshold                        | ≥ 5.0           |
 * | dirty limit per vCPU          | dirty-limit capability, vcpu-dirty-limit          | ≥ 8.1, KVM ring |
 * | real wire rate for switch-over| avail-switchover-bandwidth                        | ≥ 8.2           |
 * | dirty-rate probe modes        | calc-dirty-rate mode                              | page-sampling: all; dirty-bitmap, dirty-ring: KVM only |
 * | sub-second dirty-rate windows | calc-dirty-rate calc-time-unit                    | ≥ 8.2           |
 * | disks in the stream           | block capability (block migration)                | ≤ 9.0 (removed in 9.1) |
 *
 * dirty-bitmap mode is KVM-only here for a measured reason: QEMU 7.2 under TCG dies with
 * SIGSEGV when asked for it. Pure except for `readLevers`, which asks QMP.
 */
import type { QmpExecutor } from '../qemu/qmp.js';

export interface QemuVersion {
  major: number;
  minor: number;
  micro: number;
}

export type DirtyRateMode = 'page-sampling' | 'dirty-bitmap' | 'dirty-ring';

export interface Levers {
  version: QemuVersion;
  kvm: boolean;
  /** auto-converge's CPU throttle, steered through its parameters. */
  cpuThrottle: boolean;
  throttleTriggerThreshold: boolean;
  dirtyLimit: boolean;
  availSwitchoverBandwidth: boolean;
  dirtyRateModes: DirtyRateMode[];
  /** calc-dirty-rate takes calc-time-unit "millisecond". */
  dirtyRateMilliseconds: boolean;
  /** The block capability: QEMU puts its writable disks into the stream (gone in 9.1). */
  blockMigration: boolean;
}

interface VersionReply {
  qemu: QemuVersion;
}

interface CapabilityReply {
  capability: string;
  state: boolean;
}

interface KvmReply {
  enabled: boolean;
  present: boolean;
}

/** What the QEMU behind `qmp` can do; three or four cheap queries. */
export async function readLevers(qmp: QmpExecutor): Promise<Levers> {
  const [version, capabilities, parameters, kvm] = await Promise.all([
    qmp.execute<VersionReply>('query-version'),
    qmp.execute<CapabilityReply[]>('query-migrate-capabilities'),
    qmp.execute<Record<string, unknown>>('query-migrate-parameters'),
    qmp.execute<KvmReply>('query-kvm'),
  ]);
  return leversFrom(version.qemu, new Set(capabilities.map((c) => c.capability)), new Set(Object.keys(parameters)), kvm.enabled);
}

/** The pure part of readLevers: what the answers mean. */
export function leversFrom(version: QemuVersion, capabilities: ReadonlySet<string>, parameters: ReadonlySet<string>, kvm: boolean): Levers {
  const atLeast = (major: number, minor: number): boolean => version.major > major || (version.major === major && version.minor >= minor);
  return {
    version,
    kvm,
    cpuThrottle: capabilities.has('auto-converge') && parameters.has('max-cpu-throttle'),
    throttleTriggerThreshold: parameters.has('throttle-trigger-threshold'),
    dirtyLimit: kvm && capabilities.has('dirty-limit') && parameters.has('vcpu-dirty-limit'),
    availSwitchoverBandwidth: parameters.has('avail-switchover-bandwidth'),
    dirtyRateModes: kvm ? ['page-sampling', 'dirty-bitmap', 'dirty-ring'] : ['page-sampling'],
    // calc-time-unit is an argument, so the parameter list cannot show it: the version does.
    dirtyRateMilliseconds: atLeast(8, 2),
    blockMigration: capabilities.has('block'),
  };
}

export function formatVersion(version: QemuVersion): string {
  return `${version.major}.${version.minor}.${version.micro}`;
}
