/**
 * How an app is shown to the owner on the sign-in and consent pages: its
 * logo (only an https one, loaded with no referrer), its name and where it
 * lives. Names and links come from the app's own metadata: the page says
 * where they come from rather than vouching for them.
 */
import { escapeHtml } from './layout'

export interface AppView {
  name: string
  /** The client id's host (or "localhost" for a development client). */
  host: string
  homePage: string | null
  logo: string | null
  development: boolean
  confidential: boolean
}

export const appCard = (app: AppView): string => {
  const logo = app.logo
    ? `<img src="${escapeHtml(app.logo)}" alt="" width="48" height="48">`
    : `<div class="initial" aria-hidden="true">${escapeHtml(app.name.charAt(0).toUpperCase() || '?')}</div>`
  const link = app.homePage ? `<a href="${escapeHtml(app.homePage)}" rel="noopener noreferrer" target="_blank">${escapeHtml(app.host)}</a>` : escapeHtml(app.host)
  const badge = app.development ? '<span class="badge">development client</span>' : app.confidential ? '<span class="badge">server app</span>' : ''
  return `<div class="app">${logo}<div><strong data-field="app-name">${escapeHtml(app.name)}${badge}</strong><span>${link}</span></div></div>`
}
