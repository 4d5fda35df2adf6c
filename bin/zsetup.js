#!/usr/bin/env node
// The built CLI: the bundle from `npm run build`, or the compiled modules when a tsc-only build made them
// newer than the bundle. Node's compile cache keeps the compiled code between runs (Node 22.1+).
import fs from 'node:fs';
import module from 'node:module';
import v8 from 'node:v8';

// V8's young generation starts at 1 MB and doubles while objects survive it, up to 128 MB on a machine with
// 24 GiB. The prefill's batches survive a scavenge or two, so it grew to that and the old generation with
// it, for no gain in speed; held near its starting size (a few MB), the prefill's peak memory is about
// 100 MB lower on small payloads and large ones alike (BENCHMARKS-projections.md, "Memory on large
// payloads"). V8 reads the factor each time it resizes the young generation, so setting it here is in time.
v8.setFlagsFromString('--semi-space-growth-factor=1');

module.enableCompileCache?.();
const mtime = (file) => fs.statSync(new URL(file, import.meta.url), { throwIfNoEntry: false })?.mtimeMs ?? -1;
const bundle = '../dist/src/cli/zsetup.mjs';
const modules = '../dist/src/cli/main.js';
await import(mtime(bundle) >= mtime(modules) ? bundle : modules);
