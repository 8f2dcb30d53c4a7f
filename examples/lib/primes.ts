// The pool examples' CPU-bound task (a module of its own, with no main code:
// the cluster workers import it with --module).

/** How many primes lie in [from, to). */
export function countPrimes([from, to]: [number, number]): number {
  let count = 0;
  for (let n = Math.max(from, 2); n < to; n++) {
    let prime = true;
    for (let d = 2; d * d <= n; d++) {
      if (n % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) count++;
  }
  return count;
}
