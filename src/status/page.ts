/**
 * The status page's HTML: one self-contained document (inline CSS, no
 * scripts, no external requests) rendered from a StatusReport, in the shared
 * look of src/pages/layout.ts. Pure, so it can be checked without a server.
 * Every value sits in an element with a `data-field` attribute, which the
 * browser test reads.
 */
import { ago, BASE_STYLE, escapeHtml } from '../pages/layout'
import type { StatusReport } from './data'

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

const time = (iso: string | null | undefined, now: string, field: string): string =>
  iso
    ? `<time data-field="${field}" datetime="${escapeHtml(iso)}" title="${escapeHtml(iso)}">${escapeHtml(iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))}</time> <span class="muted">${ago(iso, now)}</span>`
    : `<span data-field="${field}" class="muted">never</span>`

const row = (label: string, value: string): string => `<div class="row"><dt>${label}</dt><dd>${value}</dd></div>`
const text = (field: string, value: string | number, cls = ''): string =>
  `<span data-field="${field}"${cls ? ` class="${cls}"` : ''}>${escapeHtml(String(value))}</span>`

/** What only the status page adds to the shared look. */
const STYLE = `${BASE_STYLE}
.pill{display:inline-flex;align-items:center;gap:6px;padding:2px 10px;border-radius:999px;font-size:13px;font-weight:600;background:color-mix(in srgb,var(--ok) 15%,transparent);color:var(--ok)}
.pill::before{content:"";width:8px;height:8px;border-radius:50%;background:currentColor}
.pill.warn{background:color-mix(in srgb,var(--warn) 15%,transparent);color:var(--warn)}
.num{font-variant-numeric:tabular-nums;font-weight:600}
`

/** The whole page for one report. */
export const renderStatusPage = (r: StatusReport): string => {
  const now = r.generatedAt
  // An inactive account says why it matters: a deployment waiting for its account, or one it left.
  const inactiveNote = r.account.active
    ? ''
    : r.repo
      ? ' <span class="muted">the repo is served only to its owner; writes are refused</span>'
      : ' <span class="muted">waiting for the account to be migrated here</span>'
  const account = `<span data-field="account" class="pill${r.account.active ? '' : ' warn'}">${escapeHtml(r.account.status)}</span>${inactiveNote}`
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
    : row('Repository', '<span data-field="records" class="muted">none yet: it arrives with the account (npm run migrate)</span>')
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
          `<span class="num">${m.prunedEvents}</span> events, <span class="num">${m.removedBlocks}</span> blocks, <span class="num">${m.deletedBlobs}</span> blobs, <span class="num">${m.expiredTokens + (m.expiredOAuth ?? 0)}</span> tokens`,
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
