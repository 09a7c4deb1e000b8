/** One-line progress bars on stderr (redrawn in place on a terminal, a line per update otherwise). */
const size = (n) => (n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`)

export const progressBar = (label, total) => {
  const tty = process.stderr.isTTY
  let last = 0
  const draw = (done, bytes, final = false) => {
    const now = Date.now()
    if (!final && !tty && now - last < 2000) return
    last = now
    const ratio = total ? Math.min(1, done / total) : 0
    const bar = total ? `[${'#'.repeat(Math.round(ratio * 24)).padEnd(24, '-')}] ${Math.round(ratio * 100)}% ${done}/${total}` : `${done}`
    const line = `  ${label} ${bar}${bytes !== undefined ? `, ${size(bytes)}` : ''}`
    if (tty) process.stderr.write(`\r${line.padEnd(78)}${final ? '\n' : ''}`)
    else process.stderr.write(`${line}\n`)
  }
  return { update: (done, bytes) => draw(done, bytes), done: (done, bytes) => draw(done, bytes, true) }
}

export { size }
