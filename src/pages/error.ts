/** The error page: what went wrong in a sentence, and a way back when there is one. */
import { escapeHtml, FORM_STYLE, pageHeader, renderPage } from './layout'

export interface ErrorPage {
  hostname: string
  title: string
  message: string
  backTo?: string | null
}

export const renderErrorPage = (p: ErrorPage): string => {
  const back = p.backTo ? `<div class="actions"><a href="${escapeHtml(p.backTo)}" rel="noopener noreferrer">Go back to the app</a></div>` : ''
  const body = `${pageHeader(p.hostname, 'atproto Personal Data Server')}
<div class="card" role="alert"><h1 data-field="error-title">${escapeHtml(p.title)}</h1><p data-field="error-message">${escapeHtml(p.message)}</p>${back}</div>`
  return renderPage({ title: `${p.title} · ${p.hostname}`, body, style: FORM_STYLE, narrow: true })
}
