/**
 * The one crypto module for secrets at rest (CRM tokens, client secrets).
 *
 * AES-256-GCM with a random 12-byte IV per value. The additional authenticated data binds a
 * ciphertext to its org, row, column and key id, so a value copied into another org's row, or
 * from the refresh-token column into the access-token column, fails to decrypt instead of being
 * silently accepted. The envelope names its key id so keys can rotate: old keys stay in the
 * keyring for decryption until `npm run rotate-keys` has re-encrypted every row under the
 * active key.
 *
 * Envelope: `v1.<keyId>.<iv b64url>.<ciphertext b64url>.<tag b64url>`.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export interface Keyring {
  activeKeyId: string;
  keys: ReadonlyMap<string, Buffer>;
}

/** What a ciphertext is bound to; every field is part of the AAD. */
export interface SecretContext {
  orgId: string;
  /** The row the value belongs to (a connection id). */
  rowId: string;
  /** `table.column`, e.g. `crm_credentials.refresh_token`. */
  column: string;
}

export class KeyringError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyringError';
  }
}

export class DecryptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DecryptionError';
  }
}

const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;

/**
 * Parses `ENCRYPTION_KEYS` (`kid1:base64key,kid2:base64key`, each key 32 bytes) and
 * `ENCRYPTION_ACTIVE_KEY_ID` (defaults to the last key listed).
 */
export function parseKeyring(spec: string, activeKeyId?: string): Keyring {
  const keys = new Map<string, Buffer>();
  for (const entry of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const colon = entry.indexOf(':');
    if (colon < 1) throw new KeyringError('ENCRYPTION_KEYS entries look like `keyId:base64key`');
    const kid = entry.slice(0, colon);
    if (!KEY_ID.test(kid)) throw new KeyringError(`key id ${JSON.stringify(kid)} must match ${KEY_ID}`);
    const key = Buffer.from(entry.slice(colon + 1), 'base64');
    if (key.length !== 32) throw new KeyringError(`key ${kid} must be 32 bytes of base64 (got ${key.length})`);
    if (keys.has(kid)) throw new KeyringError(`key id ${kid} appears twice`);
    keys.set(kid, key);
  }
  if (keys.size === 0) throw new KeyringError('ENCRYPTION_KEYS holds no key');
  const active = activeKeyId ?? [...keys.keys()].at(-1)!;
  if (!keys.has(active)) throw new KeyringError(`ENCRYPTION_ACTIVE_KEY_ID ${active} is not in ENCRYPTION_KEYS`);
  return { activeKeyId: active, keys };
}

/** A fresh random key in the `ENCRYPTION_KEYS` format, for operators and tests. */
export function generateKeySpec(keyId: string): string {
  return `${keyId}:${randomBytes(32).toString('base64')}`;
}

function aadFor(context: SecretContext, keyId: string): Buffer {
  // Length-prefixed so no two different contexts can serialize to the same bytes.
  const parts = ['v1', context.orgId, context.rowId, context.column, keyId];
  return Buffer.from(parts.map((p) => `${p.length}:${p}`).join('|'), 'utf8');
}

export function encryptSecret(keyring: Keyring, plaintext: string, context: SecretContext): string {
  const keyId = keyring.activeKeyId;
  const key = keyring.keys.get(keyId)!;
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(aadFor(context, keyId));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  const tag = cipher.getAuthTag();
  return ['v1', keyId, iv.toString('base64url'), ciphertext.toString('base64url'), tag.toString('base64url')].join('.');
}

export function keyIdOf(envelope: string): string {
  const parts = envelope.split('.');
  if (parts.length !== 5 || parts[0] !== 'v1') throw new DecryptionError('not a v1 secret envelope');
  return parts[1]!;
}

export function decryptSecret(keyring: Keyring, envelope: string, context: SecretContext): string {
  const parts = envelope.split('.');
  if (parts.length !== 5 || parts[0] !== 'v1') throw new DecryptionError('not a v1 secret envelope');
  const [, keyId, iv, ciphertext, tag] = parts as [string, string, string, string, string];
  const key = keyring.keys.get(keyId);
  if (!key) throw new DecryptionError(`key ${keyId} is not in the keyring`);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(aadFor(context, keyId));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
  } catch {
    // Never echo the cause: it could hint at which part of the binding failed.
    throw new DecryptionError(`the secret for ${context.column} does not decrypt in this context`);
  }
}

/** SHA-256 hex, for secrets we only ever compare (webhook URL secrets, OAuth states). */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

export function constantTimeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, 'utf8');
  const right = Buffer.from(b, 'utf8');
  return left.length === right.length && timingSafeEqual(left, right);
}

export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/** The keyring from `ENCRYPTION_KEYS`/`ENCRYPTION_ACTIVE_KEY_ID`; undefined when no keys are configured. */
export function keyringFromConfig(config: { ENCRYPTION_KEYS?: string | undefined; ENCRYPTION_ACTIVE_KEY_ID?: string | undefined }): Keyring | undefined {
  return config.ENCRYPTION_KEYS ? parseKeyring(config.ENCRYPTION_KEYS, config.ENCRYPTION_ACTIVE_KEY_ID) : undefined;
}
