/**
 * "Log the first, then every Nth": returns a function that says whether this
 * occurrence should be logged. A flood of the same problem then cannot flood
 * the log too, and the count tells how often it happened.
 */
export function everyNth(n: number): () => boolean {
  let count = 0;
  return () => {
    count++;
    return count === 1 || count % n === 0;
  };
}
