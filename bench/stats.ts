/** Small statistics for the benchmark: percentiles (nearest rank) and medians. */

/** The p-th percentile (0-100) by nearest rank; NaN for no samples. */
export const percentile = (values: number[], p: number): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(rank, sorted.length) - 1]
}

export const median = (values: number[]): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

export const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0)

/** A number with a sensible amount of precision for a table cell. */
export const fmt = (value: number, unit = ''): string => {
  if (!Number.isFinite(value)) return 'n/a'
  const abs = Math.abs(value)
  const text = abs >= 100 ? value.toFixed(0) : abs >= 10 ? value.toFixed(1) : value.toFixed(2)
  return unit ? `${text} ${unit}` : text
}
