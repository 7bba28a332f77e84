/**
 * Encryption of everything Temporal stores for us: workflow and activity inputs and results,
 * signals, updates, queries, memos, and (through the failure converter in
 * `temporal-failure-converter.ts`) failure messages and stack traces.
 *
 * AES-256-GCM, a random 12-byte IV per payload, the key id in the payload's metadata so keys can
 * rotate: the active key encrypts, every key in the keyring decrypts. Search attributes are NOT
 * payloads that pass through codecs (the server must index them), so they hold ids only.
 *
 * The keyring format is the one `lib/crypto.ts` uses for secrets at rest (`kid:base64key,…`,
 * 32-byte keys), parsed by the same function; the keys themselves are separate
 * (`TEMPORAL_CODEC_KEYS`), so the Temporal codec server, which decrypts histories for
 * operators, never holds the keys of the CRM tokens.
 *
 * Runs outside the workflow sandbox (client, worker main thread, codec server), so Node's
 * crypto is fine here.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { METADATA_ENCODING_KEY, type DataConverter, type Payload, type PayloadCodec } from '@temporalio/common';
import protos from '@temporalio/proto';
import { fileURLToPath } from 'node:url';
import { parseKeyring, type Keyring } from './crypto.js';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const METADATA_KEY_ID = 'encryption-key-id';
export const METADATA_CIPHER = 'encryption-cipher';
const CIPHER = 'AES-256-GCM';
const IV_BYTES = 12;
const TAG_BYTES = 16;

// CommonJS package: named exports are not visible to Node's ESM loader.
const { temporal } = protos;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class PayloadDecryptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadDecryptionError';
  }
}

export class AesGcmPayloadCodec implements PayloadCodec {
  constructor(private readonly keyring: Keyring) {}

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const keyId = this.keyring.activeKeyId;
    const key = this.keyring.keys.get(keyId)!;
    return payloads.map((payload) => {
      const plaintext = temporal.api.common.v1.Payload.encode(payload).finish();
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      // The key id is authenticated too: a payload relabelled with another key id fails.
      cipher.setAAD(Buffer.from(keyId, 'utf8'));
      const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return {
        metadata: {
          [METADATA_ENCODING_KEY]: encoder.encode(ENCRYPTED_ENCODING),
          [METADATA_KEY_ID]: encoder.encode(keyId),
          [METADATA_CIPHER]: encoder.encode(CIPHER),
        },
        data: Buffer.concat([iv, ciphertext, cipher.getAuthTag()]),
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      const encoding = payload.metadata?.[METADATA_ENCODING_KEY];
      // Payloads written before encryption was switched on stay readable.
      if (!encoding || decoder.decode(encoding) !== ENCRYPTED_ENCODING) return payload;
      const rawKeyId = payload.metadata?.[METADATA_KEY_ID];
      if (!rawKeyId) throw new PayloadDecryptionError('encrypted payload has no key id');
      const keyId = decoder.decode(rawKeyId);
      const key = this.keyring.keys.get(keyId);
      if (!key) throw new PayloadDecryptionError(`payload key ${keyId} is not in TEMPORAL_CODEC_KEYS (was it retired too early?)`);
      const data = Buffer.from(payload.data ?? new Uint8Array());
      if (data.length < IV_BYTES + TAG_BYTES) throw new PayloadDecryptionError('encrypted payload is truncated');
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
        decipher.setAAD(Buffer.from(keyId, 'utf8'));
        decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
        const plaintext = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
        return temporal.api.common.v1.Payload.decode(plaintext);
      } catch {
        throw new PayloadDecryptionError(`payload does not decrypt with key ${keyId}`);
      }
    });
  }
}

/** Why a history's payloads cannot be read with the keyring at hand (replay reports it as such). */
export interface PayloadKeyProblem {
  kind: 'missing-key' | 'unknown-key' | 'undecryptable';
  message: string;
}

/** Encrypted payloads anywhere in a history (or any protobuf object): found by their encoding. */
function encryptedPayloads(value: unknown, found: Payload[] = []): Payload[] {
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return found;
  if (Array.isArray(value)) {
    for (const item of value) encryptedPayloads(item, found);
    return found;
  }
  const encoding = (value as Payload).metadata?.[METADATA_ENCODING_KEY];
  if (encoding instanceof Uint8Array && decoder.decode(encoding) === ENCRYPTED_ENCODING) {
    found.push(value as Payload);
    return found;
  }
  for (const child of Object.values(value)) encryptedPayloads(child, found);
  return found;
}

/**
 * Whether every encrypted payload of `history` decrypts with `keyring`, and if not, why: no
 * keyring at all, key ids the keyring does not hold, or a key that does not decrypt (same id,
 * other key material). Replay checks this first, so a missing key is reported as what it is
 * instead of as the workflow task failure it would cause.
 */
export async function payloadKeyProblem(history: unknown, keyring: Keyring | undefined): Promise<PayloadKeyProblem | undefined> {
  const payloads = encryptedPayloads(history);
  if (payloads.length === 0) return undefined;
  const keyIds = [...new Set(payloads.map((p) => decoder.decode(p.metadata?.[METADATA_KEY_ID] ?? new Uint8Array())))];
  if (!keyring) {
    return { kind: 'missing-key', message: `payloads are encrypted (key ${keyIds.join(', ')}) and TEMPORAL_CODEC_KEYS is not set` };
  }
  const unknown = keyIds.filter((id) => !keyring.keys.has(id));
  if (unknown.length > 0) {
    return { kind: 'unknown-key', message: `payload key ${unknown.join(', ')} is not in TEMPORAL_CODEC_KEYS (it holds ${[...keyring.keys.keys()].join(', ')})` };
  }
  try {
    await new AesGcmPayloadCodec(keyring).decode(payloads);
    return undefined;
  } catch (err) {
    if (err instanceof PayloadDecryptionError) return { kind: 'undecryptable', message: `${err.message}: TEMPORAL_CODEC_KEYS has a key of that id with other key material` };
    throw err;
  }
}

/** The module whose `failureConverter` export moves failure messages and stack traces into an (encrypted) payload. */
export const failureConverterPath = fileURLToPath(new URL('./temporal-failure-converter.cjs', import.meta.url));

export interface CodecSettings {
  /** `kid:base64key,…`; encryption is off when absent (development only, see config). */
  TEMPORAL_CODEC_KEYS?: string | undefined;
  /** Defaults to the last key listed. */
  TEMPORAL_CODEC_ACTIVE_KEY_ID?: string | undefined;
}

export function codecKeyringFrom(settings: CodecSettings): Keyring | undefined {
  if (!settings.TEMPORAL_CODEC_KEYS) return undefined;
  try {
    return parseKeyring(settings.TEMPORAL_CODEC_KEYS, settings.TEMPORAL_CODEC_ACTIVE_KEY_ID);
  } catch (err) {
    // parseKeyring names ENCRYPTION_KEYS in its messages; say which variable was wrong.
    throw new Error(`TEMPORAL_CODEC_KEYS / TEMPORAL_CODEC_ACTIVE_KEY_ID: ${(err as Error).message}`);
  }
}

/**
 * The one data converter for clients, workers, replay and the codec server. Without a keyring
 * payloads stay plain JSON, but failure attributes are still moved into payloads so that
 * switching encryption on later does not change how failures are shaped.
 */
export function createDataConverter(keyring: Keyring | undefined): DataConverter {
  return {
    failureConverterPath,
    payloadCodecs: keyring ? [new AesGcmPayloadCodec(keyring)] : [],
  };
}
