/** Milliseconds per named phase, summed over calls of `timed` (for a step's summary). */
export function phaseTimer(): { timings: Record<string, number>; timed: <T>(name: string, fn: () => Promise<T>) => Promise<T> } {
  const timings: Record<string, number> = {};
  const timed = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    try {
      return await fn();
    } finally {
      timings[name] = (timings[name] ?? 0) + Date.now() - started;
    }
  };
  return { timings, timed };
}
