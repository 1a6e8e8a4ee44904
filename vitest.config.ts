import { defineConfig } from 'vitest/config';

// The SDK's notice about its future Node.js 22 requirement is noise in test output.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One file at a time: the timing-sensitive cluster tests and the fault harness should
    // not compete for this machine's two cores.
    fileParallelism: false,
  },
});
