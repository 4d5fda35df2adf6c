/**
 * `npm run bench`: every data-moving step measured side by side with its reference approach.
 *   npm run bench                         # defaults of each benchmark
 *   npm run bench -- --events 500000      # flags are passed to each benchmark
 *   npm run bench -- --only projections   # one of: events2, projections, projections-memory, cold-start
 * Server: $ZSETUP_BENCH_DATABASE_URL, else an embedded PostgreSQL per benchmark.
 */
import { parseArgs } from 'node:util';
import { benchColdStart } from './cold-start.js';
import { benchEvents2 } from './events2.js';
import { benchProjections } from './projections.js';
import { benchProjectionsMemory } from './projections-memory.js';

const benches: Record<string, (argv: string[]) => Promise<void>> = { events2: benchEvents2, projections: benchProjections, 'projections-memory': benchProjectionsMemory, 'cold-start': benchColdStart };
const { values } = parseArgs({ args: process.argv.slice(2), options: { only: { type: 'string' } }, strict: false });
const argv = process.argv.slice(2).filter((a, i, all) => a !== '--only' && all[i - 1] !== '--only' && !a.startsWith('--only='));

for (const [name, bench] of Object.entries(benches)) {
  if (values.only && values.only !== name) continue;
  process.stdout.write(`\n== ${name}\n`);
  await bench(argv);
}
