/** The `createdAfter`/`createdBefore` bounds of calendar days chosen in a date input
 *  (`2026-12-05`), in the user's own time zone: From includes its whole day, Until too (the
 *  bound sent is the next day's start, exclusive). `new Date("2026-12-05")` would read UTC
 *  midnight, and From = Until would find nothing. */
export function dayRange(from?: string, until?: string): { createdAfter?: string; createdBefore?: string } {
  const start = (day: string, plus = 0) => {
    const [y, m, d] = day.split("-").map(Number);
    if (!y || !m || !d) throw new Error(`${day} is not a date.`);
    return new Date(y, m - 1, d + plus);
  };
  const after = from ? start(from) : undefined;
  const before = until ? start(until, 1) : undefined;
  if (after && before && after >= before) throw new Error("“From” must be on or before “Until”.");
  return { createdAfter: after?.toISOString(), createdBefore: before?.toISOString() };
}
