import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * The stages of a prefill stream are async iterators chained with a queue of one between them: while a
 * consumer works on one item, the stage before it already produces the next. Memory stays bounded by
 * one item per stage; errors surface where the item is taken.
 */

/** Produces the next item of `source` while the consumer works on the current one (a queue of one). */
export async function* readAhead<T>(source: AsyncIterator<T>): AsyncGenerator<T> {
  let next = source.next();
  try {
    for (;;) {
      const item = await next;
      if (item.done) return;
      next = source.next();
      // Taken (and its rejection raised) at the next turn of the loop, or settled in `finally`.
      next.catch(() => {});
      yield item.value;
    }
  } finally {
    // The consumer stopped early: let the read in flight end before its connection is given back.
    await Promise.allSettled([next]);
    await source.return?.();
  }
}

/** `fn` applied to each item of `source`, in order. */
export async function* mapEach<T, U>(source: AsyncIterable<T>, fn: (item: T) => U): AsyncGenerator<U> {
  for await (const item of source) yield fn(item);
}

/**
 * Event text (payload JSON and the other columns as read, in characters; see StreamReader's `maxBytes`)
 * that the prefill streams of one process may hold at once, over every batch in flight: being read,
 * waiting to be folded or written, being written. The memory those batches take is a small multiple
 * of their text (the rows as read, the parsed events, the folded values, the COPY data; measured in
 * BENCHMARKS-projections.md, "Memory on large payloads"), so this bounds the prefill's memory in bytes
 * whatever the payloads' size and the number of streams. Streams of large events ask for smaller
 * shares (batchShare), and the garbage is collected as the text is read (COLLECT_EVERY_BYTES).
 */
export const PREFILL_MEMORY_BYTES = 48 * 1024 * 1024;

/** Batches a stream has in flight at most: one being read, one folded and waiting, one being written. */
export const BATCHES_IN_FLIGHT = 3;

/** Average event text (in characters) from which a stream's events count as large (SAML metadata, padded payloads). */
export const LARGE_EVENT_BYTES = 4096;

/**
 * What a stream of large events asks for per batch, at most. The garbage their copies leave grows with
 * the text in flight, not with the number of events, and a batch of three 1 MB events is written about
 * as fast per byte as one of twelve: on 1 MB SAML payloads, peak RSS fell by 15–40 MB for the same CPU
 * (BENCHMARKS-projections.md, "Memory on large payloads").
 */
export const LARGE_EVENTS_SHARE = 4 * 1024 * 1024;

/**
 * The share of the budget a stream asks for its next batch: `share`, or LARGE_EVENTS_SHARE when its last
 * batch (`bytes` of text over `events`) was of large events. Small-payload batches keep the full share.
 */
export function batchShare(share: number, bytes: number, events: number): number {
  return events > 0 && bytes / events >= LARGE_EVENT_BYTES ? Math.min(share, LARGE_EVENTS_SHARE) : share;
}

/**
 * Event text read between two full garbage collections (see ByteBudget). Large payloads leave their
 * copies (the rows as received, the parsed payloads, the COPY data) in V8's old generation once they
 * outlive a scavenge, and the old generation is collected late, when the heap or the external memory
 * has grown by tens of MB (BENCHMARKS-projections.md, "Memory on large payloads"). A small-payload
 * prefill reads about 350 bytes per event: one collection per ~50,000 events, which costs next to nothing.
 */
export const COLLECT_EVERY_BYTES = 16 * 1024 * 1024;

let heapTuned = false;

/**
 * Holds V8's young generation near its size now, for the rest of the process. It starts at 1 MB and
 * doubles while objects survive it, up to 128 MB on a machine with 24 GiB; the prefill's batches survive a
 * scavenge or two, so it grew to that and the old generation with it, for no gain in speed. Held small,
 * the prefill's peak memory is about 100 MB lower on small payloads and large ones alike
 * (BENCHMARKS-projections.md, "Memory on large payloads"). V8 reads the factor each time it resizes the
 * young generation, so setting it when the first batch is taken is in time; commands that prefill
 * nothing never set it.
 */
function tuneHeapForPrefill(): void {
  if (heapTuned) return;
  heapTuned = true;
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

let fullGc: (() => void) | null | undefined;

/** A full garbage collection, now (V8's `gc`, exposed at run time when node was not started with `--expose-gc`). */
function collectGarbage(): void {
  if (fullGc === undefined) {
    const exposed = (globalThis as { gc?: () => void }).gc;
    if (!exposed) v8.setFlagsFromString('--expose-gc');
    fullGc = exposed ?? (vm.runInNewContext('gc') as (() => void) | undefined) ?? null;
  }
  fullGc?.();
}

/**
 * A budget of bytes shared by concurrent streams. A stream takes a share before it reads a batch and
 * gives it back once the batch is written; a stream whose budget is all given back can always take,
 * so the streams never wait on each other in a circle. Every `collectEvery` bytes of batches read
 * (`force`), the next give-back runs a full garbage collection, so the garbage of large payloads is
 * freed at about the pace it is made (see COLLECT_EVERY_BYTES).
 */
export class ByteBudget {
  private used = 0;
  private readSinceCollection = 0;
  private readonly waiting: (() => void)[] = [];
  /** Full garbage collections run so far. */
  collections = 0;

  constructor(readonly total: number, private readonly collectEvery = COLLECT_EVERY_BYTES) {}

  /**
   * Takes up to `wanted` bytes, waiting while less than `least` is free and anything is taken. Returns
   * what was taken (at least `least`, unless the whole budget is smaller).
   */
  async take(wanted: number, least: number): Promise<number> {
    tuneHeapForPrefill();
    while (this.used > 0 && this.total - this.used < least) await new Promise<void>((resolve) => this.waiting.push(resolve));
    const n = Math.max(Math.min(wanted, this.total - this.used), Math.min(least, wanted));
    this.used += n;
    return n;
  }

  /** Takes the bytes of a batch read at once, over the budget if need be (a single event larger than a share). */
  force(n: number): void {
    this.used += n;
    this.readSinceCollection += n;
  }

  give(n: number): void {
    this.used -= n;
    if (this.readSinceCollection >= this.collectEvery) {
      this.readSinceCollection = 0;
      collectGarbage();
      this.collections++;
    }
    for (const wake of this.waiting.splice(0)) wake();
  }

  /** Bytes taken now. */
  get taken(): number {
    return this.used;
  }
}
