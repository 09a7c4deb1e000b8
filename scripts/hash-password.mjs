#!/usr/bin/env node
/**
 * `npm run hash-password [-- <password>]`: prints the salted PBKDF2 form of a
 * password for the PDS_PASSWORD secret, so the plaintext is never stored in
 * Cloudflare. Reads the password from stdin when no argument is given.
 * Uses the same code as the Worker (src/password-setting.ts).
 */
import { hashPassword } from '../src/password-setting.ts'

let password = process.argv[2]
if (!password) {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  password = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
}
if (!password) {
  console.error('usage: npm run hash-password -- <password>   (or pipe it on stdin)')
  process.exit(2)
}
console.log(await hashPassword(password))
