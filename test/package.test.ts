import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');
const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version as string;

/**
 * The package as a user gets it: `npm pack` of a clean checkout (its prepack builds dist/), installed with
 * `npm i` into an empty folder, run through `npx`. The checkout is a copy in a temporary directory, so the
 * build does not rewrite the dist/ other test files are running.
 */
let work: string;
let env: NodeJS.ProcessEnv;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'zsetup-package-'));
  // As root, the embedded PostgreSQL runs as the postgres user, which must reach its binaries in here.
  fs.chmodSync(work, 0o755);
  // The project's Node (24) first, as the npm scripts have it; no database configured.
  env = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH}`, DATABASE_URL: '', ZSETUP_DATABASE_URL: '', NO_COLOR: '1' };
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

async function sh(cmd: string, args: string[], cwd: string, timeout = 240_000): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run(cmd, args, { cwd, env, timeout, maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    // tsc reports on stdout: show both streams of the failed command.
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} failed in ${cwd}:\n${e.stdout ?? ''}\n${e.stderr ?? e.message}`);
  }
}

/** The repository's files (tracked, and new ones not ignored) as a fresh clone has them: no dist/, no .zsetup/. */
function cleanCheckout(): string {
  const checkout = path.join(work, 'checkout');
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).split('\0').filter(Boolean);
  for (const file of files) {
    // Deleted in the working tree, or not a plain file (a symlinked node_modules of a worktree).
    if (!fs.existsSync(path.join(root, file)) || !fs.lstatSync(path.join(root, file)).isFile()) continue;
    fs.mkdirSync(path.dirname(path.join(checkout, file)), { recursive: true });
    fs.copyFileSync(path.join(root, file), path.join(checkout, file));
  }
  // The dev dependencies the build needs (typescript, esbuild, @types), as `npm ci` would have installed them.
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(checkout, 'node_modules'), 'dir');
  return checkout;
}

describe('npm pack', () => {
  it('makes a package that installs into an empty folder and runs --version, --help and demo', async () => {
    const checkout = cleanCheckout();
    expect(fs.existsSync(path.join(checkout, 'dist'))).toBe(false);
    const packed = await sh('npm', ['pack', '--json', '--pack-destination', work], checkout);
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    const files = info.files.map((f) => f.path);
    expect(files).toContain('bin/zsetup.js');
    expect(files).toContain('dist/src/cli/main.js');
    expect(files).toContain('dist/steps/index.js');
    // Nothing a user does not need: no sources, tests, benchmarks or source maps.
    expect(files.filter((f) => /^(src|test|bench|dist\/bench)\/|\.map$|\.ts$/.test(f))).toEqual([]);

    const app = path.join(work, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'empty', version: '1.0.0', private: true }));
    await sh('npm', ['i', '--no-audit', '--no-fund', path.join(work, info.filename)], app);

    const v = await sh('npx', ['--no-install', 'zsetup', '--version'], app);
    expect(v.stdout.trim()).toBe(version);
    const help = await sh('npx', ['--no-install', 'zsetup', 'migrate', '--help'], app);
    expect(help.stdout).toContain('--dry-run');

    const demo = await sh('npx', ['--no-install', 'zsetup', 'demo', '--events', '3000', '--instances', '2', '--data-dir', path.join(work, 'pg')], app);
    expect(demo.stderr).toMatch(/ok events2: moved 3,000 events/);
    expect(demo.stdout).toMatch(/^projection:projections\.users14\s+succeeded/m);
    expect(demo.stdout).not.toMatch(/failed|pending/);
  }, 400_000);
});
