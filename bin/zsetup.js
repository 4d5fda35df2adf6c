#!/usr/bin/env node
// The built CLI: the bundle from `npm run build`, or the compiled modules when a tsc-only build made them
// newer than the bundle. Node's compile cache keeps the compiled code between runs (Node 22.1+).
import fs from 'node:fs';
import module from 'node:module';

module.enableCompileCache?.();
const mtime = (file) => fs.statSync(new URL(file, import.meta.url), { throwIfNoEntry: false })?.mtimeMs ?? -1;
const bundle = '../dist/src/cli/zsetup.mjs';
const modules = '../dist/src/cli/main.js';
await import(mtime(bundle) >= mtime(modules) ? bundle : modules);
