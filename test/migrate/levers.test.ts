import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from '../helpers/before-all.js';
import { estimateDirtyRate, measureDirtyRate } from '../../src/migrate/dirty-rate.js';
import { leversFrom, readLevers, type Levers } from '../../src/migrate/levers.js';
import { ThrottleActuator } from '../../src/migrate/throttle-actuator.js';
import { launchQemu, type QemuVm } from '../../src/qemu/launcher.js';
import { chooseAccel } from '../fixtures/build.js';
import { HEARTBEAT, REPO_ROOT, guestArgs } from '../fixtures/meta.js';
import { ArgumentError } from '../../src/stream/errors.js';

const MiB = 1024 * 1024;

describe('levers from QMP answers', () => {
  const v = (major: number, minor: number) => ({ major, minor, micro: 0 });
  const caps72 = new Set(['xbzrle', 'auto-converge', 'postcopy-ram', 'block']);
  const params72 = new Set(['max-cpu-throttle', 'cpu-throttle-initial', 'throttle-trigger-threshold', 'downtime-limit']);

  test('QEMU 7.2 under TCG: CPU throttle and page sampling in whole seconds only', () => {
    const levers = leversFrom(v(7, 2), caps72, params72, false);
    expect(levers).toMatchObject({ cpuThrottle: true, throttleTriggerThreshold: true, dirtyLimit: false, availSwitchoverBandwidth: false, dirtyRateMilliseconds: false, blockMigration: true });
    expect(levers.dirtyRateModes).toEqual(['page-sampling']);
  });

  test('dirty-limit needs the capability, the parameter and KVM; avail-switchover-bandwidth its parameter', () => {
    const caps = new Set([...caps72, 'dirty-limit']);
    const params = new Set([...params72, 'vcpu-dirty-limit', 'avail-switchover-bandwidth']);
    expect(leversFrom(v(10, 0), caps, params, false)).toMatchObject({ dirtyLimit: false, availSwitchoverBandwidth: true, dirtyRateMilliseconds: true });
    expect(leversFrom(v(10, 0), caps, params, true)).toMatchObject({ dirtyLimit: true, dirtyRateModes: ['page-sampling', 'dirty-bitmap', 'dirty-ring'] });
    expect(leversFrom(v(8, 1), caps, new Set(params72), true).dirtyLimit).toBe(false);
  });
});

describe('dirty-rate estimate', () => {
  test('a count that doubles with the window is a rate with no working-set bound', () => {
    const e = estimateDirtyRate(
      [
        { windowMs: 2000, dirtyBytes: 200 * MiB },
        { windowMs: 1000, dirtyBytes: 100 * MiB },
      ],
      'page-sampling',
    );
    expect(e.dirtyRate).toBe(100 * MiB);
    expect(e.workingSetBytes).toBe(Infinity);
    expect(e.windows.map((w) => w.windowMs)).toEqual([1000, 2000]);
  });

  test('a count that stays put is a working set of about that size', () => {
    const e = estimateDirtyRate(
      [
        { windowMs: 1000, dirtyBytes: 8 * MiB },
        { windowMs: 2000, dirtyBytes: 6 * MiB },
      ],
      'page-sampling',
    );
    expect(e.workingSetBytes).toBe(8 * MiB);
  });

  test('noise either way of the cut: a set seen 1.9 times larger in the long window is still bounded; a writer at 0.6 of its pace in the long window is not', () => {
    expect(
      estimateDirtyRate(
        [
          { windowMs: 1000, dirtyBytes: 8 * MiB },
          { windowMs: 4000, dirtyBytes: 15 * MiB },
        ],
        'page-sampling',
      ).workingSetBytes,
    ).toBe(15 * MiB);
    expect(
      estimateDirtyRate(
        [
          { windowMs: 1000, dirtyBytes: 16 * MiB },
          { windowMs: 4000, dirtyBytes: 0.6 * 64 * MiB },
        ],
        'page-sampling',
      ).workingSetBytes,
    ).toBe(Infinity);
  });

  test('a guest that dirtied nothing has a working set of nothing', () => {
    expect(
      estimateDirtyRate(
        [
          { windowMs: 1000, dirtyBytes: 0 },
          { windowMs: 4000, dirtyBytes: 0 },
        ],
        'page-sampling',
      ).workingSetBytes,
    ).toBe(0);
  });

  test('one window, or two of the same length, are argument errors', () => {
    expect(() => estimateDirtyRate([{ windowMs: 1000, dirtyBytes: 1 }], 'page-sampling')).toThrow(ArgumentError);
    expect(() =>
      estimateDirtyRate(
        [
          { windowMs: 1000, dirtyBytes: 1 },
          { windowMs: 1000, dirtyBytes: 2 },
        ],
        'page-sampling',
      ),
    ).toThrow(/two lengths/);
  });
});

describe('levers, dirty rate and throttle parameters on a real QEMU', () => {
  let idle: QemuVm;
  let dirty: QemuVm;
  let busy: QemuVm;
  let levers: Levers;

  beforeAllOrFail(async () => {
    const accel = await chooseAccel();
    const machine = ['-machine', 'pc-i440fx-7.2', '-m', `${256 * 1024 + 8}K`, '-smp', '1'];
    const start = (mode: 'idle' | 'dirty' | 'busy', params: string[] = []) => launchQemu({ args: [...machine, ...guestArgs(mode, params)], accel, name: `levers-${mode}`, cwd: REPO_ROOT });
    // 16 MiB/s of page writes over a 96 MiB working set: the 4 s window sees 64 MiB, four times the 1 s one.
    [idle, dirty, busy] = await Promise.all([start('idle'), start('dirty'), start('busy', ['wss=96', 'rate=16'])]);
    await Promise.all([idle, dirty, busy].map((vm) => vm.waitForSerial(HEARTBEAT, 120_000)));
    levers = await readLevers(dirty);
  }, 180_000);
  afterAll(async () => {
    await Promise.all([idle?.quit(), dirty?.quit(), busy?.quit()]);
  });

  test('QMP tells the version and the levers it has', () => {
    expect(levers.version.major).toBeGreaterThanOrEqual(7);
    expect(levers.cpuThrottle).toBe(true);
    expect(levers.dirtyRateModes).toContain('page-sampling');
  });

  test("the dirtying guest's 8 MiB buffer shows as a bounded working set; the idle guest dirties next to nothing", async () => {
    const [busy, quiet] = await Promise.all([measureDirtyRate(dirty, levers), measureDirtyRate(idle, levers)]);
    expect(busy.dirtyRate).toBeGreaterThanOrEqual(2 * MiB);
    const seen = `windows ${JSON.stringify(busy.windows)}`;
    expect(busy.workingSetBytes, seen).toBeGreaterThanOrEqual(2 * MiB);
    expect(busy.workingSetBytes, seen).toBeLessThanOrEqual(32 * MiB);
    expect(quiet.dirtyRate).toBeLessThan(busy.dirtyRate);
    // QEMU is still there and running (dirty-bitmap mode kills 7.2 under TCG).
    expect((await dirty.execute<{ status: string }>('query-status')).status).toBe('running');
  }, 30_000);

  test('the busy guest dirties at the rate it was given, with no working-set bound, and reports its work every 100 ms', async () => {
    const estimate = await measureDirtyRate(busy, levers);
    expect(estimate.dirtyRate).toBeGreaterThan(8 * MiB);
    expect(estimate.dirtyRate).toBeLessThan(32 * MiB);
    expect(estimate.workingSetBytes, `windows ${JSON.stringify(estimate.windows)}`).toBe(Infinity);
    // 16 MiB/s is 409.6 pages per 100 ms.
    const counts = [...busy.serialText().matchAll(/migstream-work (\d+)/g)].map((m) => Number(m[1])).slice(-10);
    expect(counts.length).toBe(10);
    const mean = counts.reduce((a, b) => a + b, 0) / counts.length;
    expect(mean).toBeGreaterThan(300);
    expect(mean).toBeLessThan(520);
  }, 30_000);

  test('the actuator arms auto-converge at its floor and sets exact levels', async () => {
    const actuator = new ThrottleActuator(idle);
    await actuator.arm();
    const caps = await idle.execute<{ capability: string; state: boolean }[]>('query-migrate-capabilities');
    expect(caps.find((c) => c.capability === 'auto-converge')?.state).toBe(true);
    expect(await idle.execute('query-migrate-parameters')).toMatchObject({ 'max-cpu-throttle': 1, 'cpu-throttle-initial': 1, 'throttle-trigger-threshold': 100 });
    await actuator.set(90, 1000);
    await actuator.set(120, 2000);
    expect(await idle.execute('query-migrate-parameters')).toMatchObject({ 'max-cpu-throttle': 99, 'cpu-throttle-initial': 99, 'cpu-throttle-increment': 99, 'throttle-trigger-threshold': 1 });
    expect(actuator.steps).toEqual([
      { percent: 90, atMs: 1000 },
      { percent: 99, atMs: 2000 },
    ]);
  });
});

// docs/convergence.md's table of levers per QEMU release, asked of both releases CI runs.
describe.each(['7.2', '10.0'] as const)('levers QEMU %s offers (docs/convergence.md)', (release) => {
  test('as the table says', async () => {
    const accel = await chooseAccel();
    const machine = release === '7.2' ? 'pc-i440fx-7.2' : 'pc-i440fx-10.0';
    const vm = await launchQemu({ args: ['-machine', machine, '-m', '64M', '-S'], accel, qemu: release, name: `levers-${release}`, cwd: REPO_ROOT });
    try {
      const levers = await readLevers(vm);
      expect(`${levers.version.major}.${levers.version.minor}`).toBe(release);
      const kvm = accel === 'kvm';
      expect(levers).toMatchObject({
        kvm,
        cpuThrottle: true,
        throttleTriggerThreshold: true,
        dirtyLimit: release === '10.0' && kvm,
        availSwitchoverBandwidth: release === '10.0',
        dirtyRateMilliseconds: release === '10.0',
        blockMigration: release === '7.2',
      });
    } finally {
      await vm.quit();
    }
  }, 60_000);
});
