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
