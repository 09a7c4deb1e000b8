/**
 * The files setup maintains, each edited in place and written only when its
 * bytes change (so a re-run leaves every file untouched):
 * - wrangler.toml: [vars], binding ids and routes, edited line by line so
 *   comments and everything else in it stay as they are;
 * - .dev.vars: the secrets for `wrangler dev` (KEY="value" lines; other lines kept);
 * - .pds-setup.json: what earlier runs decided and did (no secrets in it).
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs'

export const PLACEHOLDER_D1_ID = '00000000-0000-0000-0000-000000000000'
export const PLACEHOLDER_KV_ID = '00000000000000000000000000000000'

/** Writes `text` unless the file already holds exactly that; returns whether it wrote. */
export const writeIfChanged = (path, text, mode) => {
  if (existsSync(path) && readFileSync(path, 'utf8') === text) return false
  writeFileSync(path, text, mode ? { mode } : undefined)
  if (mode) chmodSync(path, mode)
  return true
}

// ---------------------------------------------------------------- .dev.vars

const VAR_LINE = /^\s*([A-Z0-9_]+)\s*=\s*(.*?)\s*$/

const unquote = (raw) => (/^".*"$/.test(raw) || /^'.*'$/.test(raw) ? raw.slice(1, -1) : raw)

export const readDevVars = (path) => {
  const vars = {}
  if (!existsSync(path)) return vars
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = line.match(VAR_LINE)
    if (m) vars[m[1]] = unquote(m[2])
  }
  return vars
}

/** `.dev.vars` text with `updates` applied: existing lines keep their place, new keys are appended. */
export const devVarsText = (path, updates, header) => {
  const lines = existsSync(path) ? readFileSync(path, 'utf8').replace(/\n$/, '').split('\n') : [header]
  const pending = new Map(Object.entries(updates))
  const out = lines.map((line) => {
    const m = line.match(VAR_LINE)
    if (!m || !pending.has(m[1])) return line
    const value = pending.get(m[1])
    pending.delete(m[1])
    return `${m[1]}="${value}"`
  })
  for (const [key, value] of pending) out.push(`${key}="${value}"`)
  return `${out.join('\n')}\n`
}

// ---------------------------------------------------------------- wrangler.toml

const splitLines = (text) => text.split('\n')

/** [start, end) line range of the table whose header matches `header` (and, for arrays of tables, holds `where`). */
const findTable = (lines, header, where) => {
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== header) continue
    let end = i + 1
    while (end < lines.length && !/^\s*\[/.test(lines[end])) end++
    if (!where || lines.slice(i + 1, end).some((l) => where.test(l))) return [i, end]
  }
  return null
}

const tomlString = (value) => JSON.stringify(value)

/** Reads `key = "value"` inside a table (first match), or at top level when header is null. */
export const readTomlValue = (text, header, key, where) => {
  const lines = splitLines(text)
  const range = header ? findTable(lines, header, where) : [0, lines.findIndex((l) => /^\s*\[/.test(l))]
  if (!range) return undefined
  const re = new RegExp(`^\\s*${key}\\s*=\\s*"([^"]*)"`)
  for (let i = range[0]; i < (range[1] < 0 ? lines.length : range[1]); i++) {
    const m = lines[i].match(re)
    if (m) return m[1]
  }
  return undefined
}

/**
 * Sets `key = "value"` in a table: replaces the active line, else a
 * commented-out `# key = …` line (keeping its place), else appends it after
 * the table's last non-blank line.
 */
export const setTomlValue = (text, header, key, value, where) => {
  const lines = splitLines(text)
  const range = findTable(lines, header, where)
  if (!range) throw new Error(`wrangler.toml has no ${header} table${where ? ` with ${where}` : ''}`)
  const [start, end] = range
  const line = `${key} = ${tomlString(value)}`
  const active = new RegExp(`^\\s*${key}\\s*=`)
  const commented = new RegExp(`^\\s*#\\s*${key}\\s*=`)
  for (const re of [active, commented]) {
    for (let i = start + 1; i < end; i++) {
      if (re.test(lines[i])) {
        lines[i] = line
        return lines.join('\n')
      }
    }
  }
  let last = end - 1
  while (last > start && lines[last].trim() === '') last--
  lines.splice(last + 1, 0, line)
  return lines.join('\n')
}

/** Sets a top-level key (before the first table), e.g. `routes`; `comment` precedes a new line. */
export const setTopLevel = (text, key, rawValue, comment) => {
  const lines = splitLines(text)
  const firstTable = lines.findIndex((l) => /^\s*\[/.test(l))
  const stop = firstTable < 0 ? lines.length : firstTable
  const line = `${key} = ${rawValue}`
  for (let i = 0; i < stop; i++) {
    if (new RegExp(`^\\s*${key}\\s*=`).test(lines[i])) {
      lines[i] = line
      return lines.join('\n')
    }
  }
  let at = stop
  while (at > 0 && lines[at - 1].trim() === '') at--
  lines.splice(at, 0, ...(comment ? [`# ${comment}`] : []), line)
  return lines.join('\n')
}

// ---------------------------------------------------------------- .pds-setup.json

export const readState = (path) => (existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : null)

/** Stable JSON (keys in insertion order, fixed indentation), so an unchanged state is byte-identical. */
export const stateText = (state) => `${JSON.stringify(state, null, 2)}\n`
