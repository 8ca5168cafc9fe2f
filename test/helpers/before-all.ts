/**
 * `beforeAll` for set-up that needs the machine (QEMU, root, namespaces, libvirt): when it
 * throws, every test of its suite fails with that error. Vitest would otherwise report the
 * suite's tests as skipped (the file fails, but the tests count as skipped, not failed), and a
 * machine that cannot reach QEMU must show failed tests, never skipped ones.
 */
import { beforeAll, beforeEach } from 'vitest';

export function beforeAllOrFail(setup: () => unknown, timeoutMs?: number): void {
  let failure: { error: unknown } | undefined;
  beforeAll(async () => {
    try {
      await setup();
    } catch (error) {
      failure = { error };
    }
  }, timeoutMs);
  beforeEach(() => {
    if (failure !== undefined) throw failure.error;
  });
}
