/**
 * The email methods the Bluesky app calls, as the reference answers them,
 * when this deployment can send email (the EMAIL binding and PDS_EMAIL_FROM);
 * otherwise a 400 that tells the owner how the address is set instead.
 */
import { accessAuth, fullAccessAuth } from '../auth/verifier'
import { changeAddress, checkToken, confirmAddress, getEmailState, sendToken, type EmailSender } from '../email/account-email'
import { InvalidRequestError } from '../errors'
import type { Deps } from '../http/context'
import { com } from '../lexicons'
import type { XrpcRouter } from './router'

const NO_EMAIL_SENDER =
  'This PDS cannot send email (no EMAIL binding and PDS_EMAIL_FROM). Its owner sets the address with PDS_EMAIL (and PDS_EMAIL_CONFIRMED) in wrangler.toml.'

/** A plausible single address; the reference also refuses disposable domains, which we cannot know. */
const EMAIL_SHAPE = /^[^\s@]+@[^\s@]+\.[a-z]{2,}$/i

const senderOrRefuse = (deps: Deps): EmailSender => {
  if (!deps.email) throw new InvalidRequestError(NO_EMAIL_SENDER)
  return deps.email
}

const addressOrRefuse = (address: string | null): string => {
  if (!address) throw new InvalidRequestError('account does not have an email address')
  return address
}

export const registerEmailMethods = (x: XrpcRouter): void => {
  x.procedure(com.atproto.server.requestEmailConfirmation.main, accessAuth, async ({ deps }) => {
    const sender = senderOrRefuse(deps)
    const { address } = await getEmailState(deps.db, deps.config)
    await sendToken(deps.db, sender, 'confirm_email', addressOrRefuse(address))
  })

  x.procedure(com.atproto.server.confirmEmail.main, accessAuth, async ({ deps, input }) => {
    senderOrRefuse(deps)
    const { address } = await getEmailState(deps.db, deps.config)
    if (input.email.toLowerCase() !== addressOrRefuse(address).toLowerCase()) throw new InvalidRequestError('invalid email', 'InvalidEmail')
    await checkToken(deps.db, 'confirm_email', input.token)
    await confirmAddress(deps.db)
  })

  x.procedure(com.atproto.server.requestEmailUpdate.main, fullAccessAuth, async ({ deps }) => {
    const sender = senderOrRefuse(deps)
    const { address, confirmed } = await getEmailState(deps.db, deps.config)
    addressOrRefuse(address)
    // A confirmed address must approve its replacement; an unconfirmed one proves nothing.
    if (confirmed) await sendToken(deps.db, sender, 'update_email', address as string)
    return { tokenRequired: confirmed }
  })

  x.procedure(com.atproto.server.updateEmail.main, fullAccessAuth, async ({ deps, input }) => {
    senderOrRefuse(deps)
    const email = input.email.trim().toLowerCase()
    if (!EMAIL_SHAPE.test(email)) throw new InvalidRequestError('This email address is not supported, please use a different email.')
    const { confirmed } = await getEmailState(deps.db, deps.config)
    if (confirmed) {
      if (!input.token) throw new InvalidRequestError('confirmation token required', 'TokenRequired')
      await checkToken(deps.db, 'update_email', input.token)
    }
    await changeAddress(deps.db, email)
  })
}
