import { defineConfig } from 'vitest/config';

export default defineConfig({
  // The sources only: dist/ holds the compiled copies.
  test: { include: ['test/**/*.test.ts'] },
});
