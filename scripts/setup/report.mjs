/**
 * What setup tells the owner at the end: the DNS records to add, the routes
 * that make Cloudflare serve the PDS on its host name, and what to do next.
 */

export const isLoopbackHost = (hostname) => /^(localhost|127\.0\.0\.1)(:\d+)?$/.test(hostname)

/** Handles served by the PDS itself (over /.well-known/atproto-did) rather than by a DNS TXT record. */
export const handleUnderHost = (handle, hostname) => handle === hostname || handle.endsWith(`.${hostname}`)

/** Host names the Worker answers on as Custom Domains (Cloudflare creates their DNS records). */
export const customDomains = (hostname, handle) => {
  if (isLoopbackHost(hostname)) return []
  return handle !== hostname && handle.endsWith(`.${hostname}`) ? [hostname, handle] : [hostname]
}

/** The `routes = [...]` value for wrangler.toml. */
export const routesToml = (domains) => `[${domains.map((d) => `{ pattern = ${JSON.stringify(d)}, custom_domain = true }`).join(', ')}]`

export const dnsRecords = ({ hostname, handle, did }) => {
  const lines = []
  for (const domain of customDomains(hostname, handle)) {
    lines.push(`  ${domain.padEnd(32)} Custom Domain of the Worker: created by \`npm run deploy\` (the zone must be on Cloudflare)`)
  }
  if (handleUnderHost(handle, hostname)) {
    lines.push(`  handle ${handle}: nothing to add, the PDS answers https://${handle}/.well-known/atproto-did`)
  } else {
    lines.push(`  _atproto.${handle.padEnd(24)} TXT  "did=${did}"`)
  }
  return lines.join('\n')
}

const box = (title, body) => {
  const width = Math.max(title.length, ...body.map((l) => l.length)) + 4
  const bar = '*'.repeat(width)
  return [bar, `* ${title.padEnd(width - 4)} *`, ...body.map((l) => `* ${l.padEnd(width - 4)} *`), bar].join('\n')
}

export const backupNotice = (file) =>
  box('SAVE YOUR KEY BACKUP NOW', [
    `${file}`,
    'holds your signing key (and PLC rotation key). Copy it somewhere safe and',
    'offline (password manager, encrypted drive), then delete it from here.',
    'Without it you cannot recover or move your account; Cloudflare secrets',
    'cannot be read back.',
  ])

export const passwordNotice = (password) =>
  box('YOUR LOGIN PASSWORD (shown once, only its hash is stored)', [password])
