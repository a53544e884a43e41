/** @jest-config-loader-options {"transpileOnly": true} */
import type { Config } from 'jest';

// Type checking is its own step (`npm run typecheck`); with isolatedModules in
// tsconfig.json, ts-jest only transpiles (about 5x faster cold).
const config: Config = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': 'ts-jest' },
  // e2e tests start real managers and processes; run files in parallel but not too wide on 2 cores.
  maxWorkers: 2,
  testTimeout: 30000,
  // test/skip-reporter.js names the tests skipped for a missing system package.
  reporters: ['default', '<rootDir>/test/skip-reporter.js'],
  // Fails the run if any process started by a test outlives it (test/leak-check.ts).
  globalSetup: '<rootDir>/test/global-setup.ts',
  globalTeardown: '<rootDir>/test/global-teardown.ts',
};

export default config;
