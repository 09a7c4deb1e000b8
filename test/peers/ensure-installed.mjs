// Installs test/peers' own node_modules on first use, so a fresh clone or a CI runner can start the
// reference PDS without manual steps. Idempotent; the already-installed path only stats a few files.
// How, and why it is more than `npm install`: ../shared/peer-install.mjs.
//
//   node test/peers/ensure-installed.mjs            (CLI; exit code 0 when ready)
//   import { ensureInstalled, peersNode } from './ensure-installed.mjs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { ensurePeerPackage, findNode22, runInstallCli } from '../shared/peer-install.mjs'

export const PEERS_DIR = path.dirname(fileURLToPath(import.meta.url))

/** Path of a Node >= 22 binary to run the peers with (and to run npm under); $PEERS_NODE overrides. */
export function peersNode() {
  return findNode22({ envVar: 'PEERS_NODE', who: 'test/peers' })
}

/** Resolves once test/peers/node_modules is usable by `peersNode()`. Fast when nothing is to do. */
export function ensureInstalled({ quiet = false } = {}) {
  return ensurePeerPackage({ dir: PEERS_DIR, name: 'peers', node: peersNode(), lockMinutes: 15, quiet })
}

runInstallCli(import.meta.url, ensureInstalled)
