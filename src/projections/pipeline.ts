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
 * whatever the payloads' size and the number of streams.
 */
export const PREFILL_MEMORY_BYTES = 48 * 1024 * 1024;

/** Batches a stream has in flight at most: one being read, one folded and waiting, one being written. */
export const BATCHES_IN_FLIGHT = 3;

/**
 * A budget of bytes shared by concurrent streams. A stream takes a share before it reads a batch and
 * gives it back once the batch is written; a stream whose budget is all given back can always take,
 * so the streams never wait on each other in a circle.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly total: number) {}

  /**
   * Takes up to `wanted` bytes, waiting while less than `least` is free and anything is taken. Returns
   * what was taken (at least `least`, unless the whole budget is smaller).
   */
  async take(wanted: number, least: number): Promise<number> {
    while (this.used > 0 && this.total - this.used < least) await new Promise<void>((resolve) => this.waiting.push(resolve));
    const n = Math.max(Math.min(wanted, this.total - this.used), Math.min(least, wanted));
    this.used += n;
    return n;
  }

  /** Takes `n` bytes at once, over the budget if need be (a single event larger than a share). */
  force(n: number): void {
    this.used += n;
  }

  give(n: number): void {
    this.used -= n;
    for (const wake of this.waiting.splice(0)) wake();
  }

  /** Bytes taken now. */
  get taken(): number {
    return this.used;
  }
}
