import { describe, expect, test } from 'vitest';
import { DESTINATION_FINISH_MS, downtimeBudget, handoverMs } from '../../src/migrate/handover.js';
import { ArgumentError } from '../../src/stream/errors.js';

describe("the downtime limit split into QEMU's part and the hand-over", () => {
  test('QEMU gets the limit less the hand-over', () => {
    expect(downtimeBudget(300, 180)).toEqual({ limitMs: 300, handoverMs: 180, qemuLimitMs: 120 });
    expect(downtimeBudget(300, 0)).toEqual({ limitMs: 300, handoverMs: 0, qemuLimitMs: 300 });
  });

  test('QEMU keeps a quarter of the limit however long the hand-over', () => {
    expect(downtimeBudget(300, 500)).toEqual({ limitMs: 300, handoverMs: 225, qemuLimitMs: 75 });
    expect(downtimeBudget(10, 10).qemuLimitMs).toBe(3);
  });

  test("the hand-over is the link's tail plus the destination's finish", () => {
    expect(handoverMs(104.4)).toBe(104 + DESTINATION_FINISH_MS);
    expect(handoverMs(null)).toBe(DESTINATION_FINISH_MS);
  });

  test("send's hold drains after QEMU's last byte too: it adds to the hand-over", () => {
    expect(handoverMs(104.4, 200)).toBe(304 + DESTINATION_FINISH_MS);
    expect(handoverMs(null, 100)).toBe(100 + DESTINATION_FINISH_MS);
  });

  test('bad figures are argument errors', () => {
    expect(() => downtimeBudget(0, 10)).toThrow(ArgumentError);
    expect(() => downtimeBudget(300, -1)).toThrow(/handoverMs/);
    expect(() => downtimeBudget(300, Number.NaN)).toThrow(/handoverMs/);
  });
});
