/**
 * The one look of every page the Worker renders (status, sign-in, consent,
 * account, errors): self-contained HTML with inline CSS, no script, light and
 * dark from the system setting, readable from a 320 px phone to a desktop.
 * Pure functions of their input, so they are checked without a server.
 */

export const escapeHtml = (value: string): string =>
  value.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch] as string)

/** Colours, type and the card/row elements every page uses. */
export const BASE_STYLE = `
:root{color-scheme:light dark;--bg:#f4f6fa;--card:#fff;--fg:#14181f;--muted:#667085;--line:#e4e7ec;--accent:#1185fe;--accent-fg:#fff;--ok:#12b76a;--warn:#f79009;--danger:#d92d20;--soft:#eef4ff}
@media (prefers-color-scheme:dark){:root{--bg:#0b0f16;--card:#151b26;--fg:#e6e9ef;--muted:#8b95a7;--line:#232b3a;--soft:#1a2436;--danger:#f97066}}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:760px;margin:0 auto;padding:40px 20px}
header{display:flex;align-items:center;gap:14px;margin-bottom:24px}
.logo{flex:none;width:44px;height:44px;border-radius:12px;background:linear-gradient(135deg,#1185fe,#7c5cff);display:grid;place-items:center;color:#fff;font-weight:700;font-size:20px}
h1{font-size:22px;margin:0}h1+p{margin:0;color:var(--muted)}
section{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:6px 20px;margin-bottom:16px}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:14px 0 4px}
dl{margin:0}.row{display:flex;gap:16px;padding:9px 0;border-top:1px solid var(--line)}.row:first-child{border-top:0}
dt{flex:0 0 170px;color:var(--muted)}dd{margin:0;min-width:0;overflow-wrap:anywhere}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13.5px}
.muted{color:var(--muted)}
footer{color:var(--muted);font-size:13px;text-align:center;margin-top:24px}a{color:var(--accent)}
@media (max-width:520px){main{padding:24px 14px}.row{flex-direction:column;gap:2px}dt{flex:none}}
`

/** Forms, buttons and notices of the interactive pages (sign-in, consent, account). */
export const FORM_STYLE = `
main.narrow{max-width:480px}
.card{background:var(--card);border:1px solid var(--line);border-radius:16px;padding:24px;margin-bottom:16px}
.card h1{margin-bottom:6px}.card>p{margin:0 0 16px}
label{display:block;font-weight:600;margin:14px 0 6px}
input[type=password],input[type=text]{width:100%;font:inherit;padding:11px 12px;border:1px solid var(--line);border-radius:10px;background:var(--bg);color:var(--fg)}
input:focus-visible,button:focus-visible,a:focus-visible{outline:3px solid color-mix(in srgb,var(--accent) 45%,transparent);outline-offset:2px}
.check{display:flex;align-items:center;gap:8px;font-weight:400;margin:14px 0 0}
.check input{width:18px;height:18px;margin:0}
.actions{display:flex;gap:10px;margin-top:20px;flex-wrap:wrap}
.actions form{display:contents}
button{white-space:nowrap;font:inherit;font-weight:600;border-radius:10px;padding:11px 18px;border:1px solid var(--line);background:var(--card);color:var(--fg);cursor:pointer;min-height:44px}
button.primary{background:var(--accent);border-color:var(--accent);color:var(--accent-fg)}
button.danger{color:var(--danger)}
.actions button{flex:1 1 140px}
button.small{padding:6px 12px;min-height:36px;font-size:14px}
.notice{border-radius:10px;padding:10px 12px;margin:0 0 14px;background:var(--soft)}
.notice.error{background:color-mix(in srgb,var(--danger) 14%,transparent);color:var(--danger)}
.notice.ok{background:color-mix(in srgb,var(--ok) 14%,transparent)}
.app{display:flex;align-items:center;gap:12px;margin-bottom:16px}
.app img,.app .initial{flex:none;width:48px;height:48px;border-radius:12px;object-fit:cover;background:var(--soft)}
.app .initial{display:grid;place-items:center;font-weight:700;font-size:20px;color:var(--accent)}
.app strong{display:block;font-size:17px}.app span{color:var(--muted);font-size:14px;overflow-wrap:anywhere}
.badge{display:inline-block;font-size:12px;font-weight:600;padding:1px 8px;border-radius:999px;background:var(--soft);color:var(--muted);margin-left:6px;vertical-align:middle}
.perms{list-style:none;padding:0;margin:0}
.perms>li{border-top:1px solid var(--line);padding:12px 0}.perms>li:first-child{border-top:0}
.perms h3{font-size:15px;margin:0 0 4px}.perms p{margin:0 0 4px;color:var(--muted);font-size:14px}
.perms ul{margin:0;padding-left:20px}.perms li li{margin:2px 0}
.perms .sensitive h3::after{content:"Sensitive";font-size:12px;font-weight:600;color:var(--warn);margin-left:8px}
.items{list-style:none;padding:0;margin:0}
.items>li{display:flex;gap:12px;align-items:flex-start;justify-content:space-between;border-top:1px solid var(--line);padding:12px 0}
.items>li:first-child{border-top:0}.items form{flex:none}.items .what{min-width:0;overflow-wrap:anywhere}.items .what small{display:block;color:var(--muted)}
.empty{color:var(--muted);padding:10px 0}
.secret{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:18px;letter-spacing:.04em;user-select:all}
@media (max-width:520px){.card{padding:18px}.items>li{flex-direction:column}.items>li form{align-self:stretch}.items>li button{width:100%}}
`

export interface PageOptions {
  title: string
  body: string
  /** Extra CSS for this page only. */
  style?: string
  /** Narrow column (sign-in, consent, errors). */
  narrow?: boolean
}

/** A complete HTML document in the shared look. */
export const renderPage = (opts: PageOptions): string => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="color-scheme" content="light dark"><meta name="referrer" content="no-referrer">
<title>${escapeHtml(opts.title)}</title><style>${BASE_STYLE}${opts.style ?? ''}</style></head>
<body><main${opts.narrow ? ' class="narrow"' : ''}>
${opts.body}
</main></body></html>`

/** The page header: the PDS mark, a title and a subtitle. */
export const pageHeader = (title: string, subtitle: string): string =>
  `<header><div class="logo" aria-hidden="true">@</div><div><h1>${escapeHtml(title)}</h1><p>${escapeHtml(subtitle)}</p></div></header>`

/** Hidden form fields (values escaped). */
export const hiddenFields = (fields: Record<string, string>): string =>
  Object.entries(fields)
    .map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`)
    .join('')

/** "3 min ago" relative to `now`, so pages need no script. */
export const ago = (iso: string, now: string): string => {
  const s = Math.max(0, Math.round((Date.parse(now) - Date.parse(iso)) / 1000))
  if (!Number.isFinite(s)) return ''
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  if (s < 86400) return `${Math.round(s / 3600)} h ago`
  return `${Math.round(s / 86400)} days ago`
}
