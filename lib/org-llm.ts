/**
 * What the API (which stores an org's LLM key) and the workers (which decrypt it) must agree on:
 * the column the ciphertext is bound to (lib/crypto.ts AAD) and how much of a key may be shown.
 */
export const ORG_LLM_KEY_COLUMN = 'org_llm_provider_keys.api_key';

/** Keys shorter than this show no hint at all: four characters of a short key say too much. */
const HINT_MIN_KEY_LENGTH = 20;

/** `…abcd` for a long key, null for a short one; the only part of a key ever answered. */
export function keyHintOf(apiKey: string): string | null {
  return apiKey.length >= HINT_MIN_KEY_LENGTH ? `…${apiKey.slice(-4)}` : null;
}
