/** The version reported by /xrpc/_health and the status page. */
export const VERSION = '0.1.0'
