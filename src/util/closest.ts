// "Did you mean" helpers: edit distance between names. No dependencies, so modules that must not load libtorch
// (the LLM data client) can use them too.

/** Levenshtein distance (insertions, deletions, substitutions) between two strings. */
export function levenshtein(a: string, b: string): number {
  const d: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length];
}

/** The `n` candidates closest to `name` by edit distance (ties keep the candidates' order), for "did you mean" messages. */
export function closest(name: string, candidates: string[], n = 5): string[] {
  return candidates
    .map((c, i) => [c, levenshtein(name, c), i] as const)
    .sort((x, y) => x[1] - y[1] || x[2] - y[2])
    .slice(0, n)
    .map((x) => x[0]);
}
