/**
 * The status page's HTML: one self-contained document (inline CSS, no
 * scripts, no external requests) rendered from a StatusReport. Pure, so it
 * can be checked without a server. Every value sits in an element with a
 * `data-field` attribute, which the browser test reads.
 */
import type { StatusReport } from './data'

const escapeHtml = (value: string): string =>
  value.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch] as string)

const formatBytes = (n: number): string => {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let value = n / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`
}

/** "3 min ago" relative to the report's own time, so the page needs no script. */
const ago = (iso: string, now: string): string => {
  const s = Math.max(0, Math.round((Date.parse(now) - Date.parse(iso)) / 1000))
  if (!Number.isFinite(s)) return ''
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  if (s < 86400) return `${Math.round(s / 3600)} h ago`
  return `${Math.round(s / 86400)} days ago`
}

const time = (iso: string | null | undefined, now: string, field: string): string =>
  iso
    ? `<time data-field="${field}" datetime="${escapeHtml(iso)}" title="${escapeHtml(iso)}">${escapeHtml(iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))}</time> <span class="muted">${ago(iso, now)}</span>`
    : `<span data-field="${field}" class="muted">never</span>`

const row = (label: string, value: string): string => `<div class="row"><dt>${label}</dt><dd>${value}</dd></div>`
const text = (field: string, value: string | number, cls = ''): string =>
  `<span data-field="${field}"${cls ? ` class="${cls}"` : ''}>${escapeHtml(String(value))}</span>`

const STYLE = `
:root{color-scheme:light dark;--bg:#f4f6fa;--card:#fff;--fg:#14181f;--muted:#667085;--line:#e4e7ec;--accent:#1185fe;--ok:#12b76a;--warn:#f79009}
@media (prefers-color-scheme:dark){:root{--bg:#0b0f16;--card:#151b26;--fg:#e6e9ef;--muted:#8b95a7;--line:#232b3a}}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:760px;margin:0 auto;padding:40px 20px}
header{display:flex;align-items:center;gap:14px;margin-bottom:24px}
.logo{width:44px;height:44px;border-radius:12px;background:linear-gradient(135deg,#1185fe,#7c5cff);display:grid;place-items:center;color:#fff;font-weight:700;font-size:20px}
h1{font-size:22px;margin:0}h1+p{margin:0;color:var(--muted)}
.pill{display:inline-flex;align-items:center;gap:6px;padding:2px 10px;border-radius:999px;font-size:13px;font-weight:600;background:color-mix(in srgb,var(--ok) 15%,transparent);color:var(--ok)}
.pill::before{content:"";width:8px;height:8px;border-radius:50%;background:currentColor}
.pill.warn{background:color-mix(in srgb,var(--warn) 15%,transparent);color:var(--warn)}
section{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:6px 20px;margin-bottom:16px}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:14px 0 4px}
dl{margin:0}.row{display:flex;gap:16px;padding:9px 0;border-top:1px solid var(--line)}.row:first-child{border-top:0}
dt{flex:0 0 170px;color:var(--muted)}dd{margin:0;min-width:0;overflow-wrap:anywhere}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13.5px}
.muted{color:var(--muted)}.num{font-variant-numeric:tabular-nums;font-weight:600}
footer{color:var(--muted);font-size:13px;text-align:center;margin-top:24px}a{color:var(--accent)}
`

/** The whole page for one report. */
export const renderStatusPage = (r: StatusReport): string => {
  const now = r.generatedAt
  const account = `<span data-field="account" class="pill${r.account.active ? '' : ' warn'}">${escapeHtml(r.account.status)}</span>`
  const repo = r.repo
    ? [
        row('Records', text('records', r.repo.records, 'num')),
        row(
          'Blocks',
          `${text('blocks', r.repo.blocks, 'num')} <span class="muted">(${r.repo.bytes >= 1024 ? `${formatBytes(r.repo.bytes)}, ` : ''}${text('bytes', r.repo.bytes)} bytes)</span>`,
        ),
        row('Last commit', time(r.repo.lastCommitAt, now, 'last-commit')),
        row('Revision', text('rev', r.repo.rev, 'mono')),
      ].join('')
    : row('Repository', '<span class="muted">created on the first request that needs it</span>')
  const crawl = r.relays.lastCrawlRequest
  const relays = [
    row('Relays', r.relays.hosts.length ? text('relays', r.relays.hosts.join(', '), 'mono') : '<span data-field="relays" class="muted">none configured</span>'),
    row(
      'Last crawl request',
      crawl ? `${time(crawl.at, now, 'last-crawl')} <span class="muted">(${crawl.trigger === 'cron' ? 'hourly check' : 'after a write'})</span>` : time(null, now, 'last-crawl'),
    ),
  ].join('')
  const m = r.maintenance
  const maintenance = m
    ? [
        row('Last run', time(m.at, now, 'maintenance-at')),
        row(
          'Cleaned up',
          `<span class="num">${m.prunedEvents}</span> events, <span class="num">${m.removedBlocks}</span> blocks, <span class="num">${m.deletedBlobs}</span> blobs, <span class="num">${m.expiredTokens}</span> tokens`,
        ),
      ].join('')
    : row('Last run', time(null, now, 'maintenance-at'))
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(r.hostname)} · atproto PDS</title><style>${STYLE}</style></head>
<body><main>
<header><div class="logo" aria-hidden="true">@</div><div><h1 data-field="hostname">${escapeHtml(r.hostname)}</h1><p>An atproto Personal Data Server · edge-pds</p></div></header>
<section><h2>Account</h2><dl>
${row('Handle', text('handle', `@${r.handle}`))}
${row('DID', text('did', r.did, 'mono'))}
${row('Status', account)}
</dl></section>
<section><h2>Repository</h2><dl>${repo}</dl></section>
<section><h2>Firehose</h2><dl>
${row('Subscribers', r.firehose.subscribers === null ? '<span data-field="subscribers" class="muted">unknown</span>' : text('subscribers', r.firehose.subscribers, 'num'))}
${row('Last seq', r.firehose.lastSeq === null ? '<span data-field="last-seq" class="muted">none yet</span>' : text('last-seq', r.firehose.lastSeq, 'num'))}
${row('Last event', time(r.firehose.lastEventAt, now, 'last-event'))}
${relays}
</dl></section>
<section><h2>Maintenance</h2><dl>${maintenance}</dl></section>
<footer>edge-pds ${text('version', r.version)} · API under <span class="mono">/xrpc/</span> · <a href="/status.json">status.json</a> · generated ${escapeHtml(now)}</footer>
</main></body></html>`
}
