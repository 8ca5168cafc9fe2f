import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds the real-QEMU fixtures once (cached in .cache/fixtures); throws if QEMU cannot run.
    globalSetup: ['test/fixtures/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 30 * 60_000,
  },
});
