import { describe, expect, test } from 'vitest';
import { WakeablePause } from '../../src/migrate/wakeable-pause.js';

describe('WakeablePause', () => {
  test('a wake ends the pause in progress; a wake between pauses ends the next one at once, once', async () => {
    const pause = new WakeablePause();
    let t = Date.now();
    const waiting = pause.pause(5000);
    setTimeout(() => pause.wake(), 20);
    await waiting;
    expect(Date.now() - t).toBeLessThan(1000);
    pause.wake();
    t = Date.now();
    await pause.pause(5000);
    expect(Date.now() - t).toBeLessThan(100);
    t = Date.now();
    await pause.pause(50);
    expect(Date.now() - t).toBeGreaterThanOrEqual(45);
  });
});
