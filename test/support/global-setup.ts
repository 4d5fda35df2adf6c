import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbedded } from '../../src/db/embedded.js';

declare module 'vitest' {
  export interface ProvidedContext {
    serverUrl: string;
  }
}

/**
 * One PostgreSQL for the whole run: ZSETUP_TEST_DATABASE_URL when set (CI's PostgreSQL 15 pass),
 * otherwise an embedded server in a temporary directory. Each test file makes its own database.
 */
export default async function setup(project: TestProject) {
  const given = process.env.ZSETUP_TEST_DATABASE_URL;
  if (given) {
    project.provide('serverUrl', given);
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zsetup-test-'));
  fs.chmodSync(dir, 0o755);
  const server = await startEmbedded(dir, () => {});
  project.provide('serverUrl', server.url);
  return async () => {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
}
