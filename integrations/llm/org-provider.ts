/**
 * Which LLM an org's calls go to (issue 15, item 4): the org's own provider when it set one
 * (api/services/llm-provider.ts), the deployment's (LLM_BASE_URL/LLM_API_KEY) otherwise.
 *
 * The key is read and decrypted here, inside the activity that makes the call, as the org's
 * worker (RLS), and lives only in the client built for that call: it is never an argument, a
 * result or a log field, so it never reaches a workflow history. Nothing is cached, so a changed
 * or removed provider applies from the next call on.
 *
 * The org's base URL passed the SSRF guard when it was saved; every call goes through the guarded
 * fetch again (lib/ssrf.ts), so a name that now resolves to an internal address is refused at
 * connect time. Such a refusal will not change on retry and fails the call for good.
 */
import type pg from 'pg';
import { decryptSecret, DecryptionError, type Keyring } from '../../lib/crypto.js';
import { withPrincipal } from '../../lib/db.js';
import { ORG_LLM_KEY_COLUMN } from '../../lib/org-llm.js';
import { UnsafeUrlError, type GuardedFetch } from '../../lib/ssrf.js';
import { LlmClient } from './chat-completions.js';
import { EmbeddingError, EmbeddingsClient, type Embedder } from './embeddings.js';
import { LlmError } from './errors.js';

/** Where one call goes: the deployment's client, or a client of the org's own provider and its model. */
export type ChatRoute =
  | { source: 'deployment'; client: LlmClient }
  | { source: 'org'; client: LlmClient; model: string; host: string };

export interface LlmRoutes {
  chatFor(orgId: string): Promise<ChatRoute>;
  /** The org's embedding model (its own provider's, else the deployment's); undefined: lexical only. */
  embedderFor(orgId: string): Promise<Embedder | undefined>;
}

/** Every org on the deployment's provider: for tools and benchmarks that have no org providers. */
export function deploymentRoutes(llm: LlmClient, embedder?: Embedder): LlmRoutes {
  return { chatFor: async () => ({ source: 'deployment', client: llm }), embedderFor: async () => embedder };
}

interface OrgProviderRow {
  base_url: string;
  default_model: string;
  embedding_model: string | null;
  api_key: string | null;
}

export interface OrgLlmRoutesDeps {
  pool: pg.Pool;
  /** ENCRYPTION_KEYS: without it no org key can be read, and an org that set one fails clearly. */
  keyring: Keyring | undefined;
  /** The SSRF-guarded fetch (lib/ssrf.ts `createGuardedFetch`) every call to an org's provider goes through. */
  fetch: GuardedFetch;
  deployment: { llm: LlmClient; embedder?: Embedder | undefined };
  timeoutMs: number;
}

function isSsrfRefusal(err: unknown): boolean {
  if (err instanceof UnsafeUrlError) return true;
  const cause = (err as { cause?: unknown } | null)?.cause;
  return cause instanceof UnsafeUrlError || (cause as { code?: unknown } | undefined)?.code === 'ESSRF';
}

export function createOrgLlmRoutes(deps: OrgLlmRoutesDeps): LlmRoutes {
  async function load(orgId: string): Promise<{ baseUrl: string; defaultModel: string; embeddingModel: string | null; apiKey: string } | undefined> {
    const row = await withPrincipal(deps.pool, { kind: 'worker', orgId }, async (tx) => {
      const { rows } = await tx.query<OrgProviderRow>(
        `select p.base_url, p.default_model, p.embedding_model, k.api_key
           from public.org_llm_providers p left join public.org_llm_provider_keys k on k.org_id = p.org_id
          where p.org_id = $1`,
        [orgId],
      );
      return rows[0];
    });
    if (!row) return undefined;
    const unreadable = (why: string) => new LlmError('rejected', `The organization's LLM provider key ${why}; set the key again (PUT /v1/orgs/${orgId}/llm-provider)`);
    if (!row.api_key) throw unreadable('is missing');
    if (!deps.keyring) throw unreadable('cannot be read: this worker has no ENCRYPTION_KEYS');
    try {
      const apiKey = decryptSecret(deps.keyring, row.api_key, { orgId, rowId: orgId, column: ORG_LLM_KEY_COLUMN });
      return { baseUrl: row.base_url, defaultModel: row.default_model, embeddingModel: row.embedding_model, apiKey };
    } catch (err) {
      if (err instanceof DecryptionError) throw unreadable('does not decrypt with this worker\'s ENCRYPTION_KEYS');
      throw err;
    }
  }

  /** The guarded fetch, typed for the clients, with an SSRF refusal made final for each of them. */
  const guarded = (refusal: (message: string) => Error): typeof fetch =>
    (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
      try {
        return await deps.fetch(String(input), init as Parameters<GuardedFetch>[1]);
      } catch (err) {
        if (isSsrfRefusal(err)) throw refusal(`The organization's LLM provider URL is refused: ${(err as Error).message}`);
        throw err;
      }
    }) as unknown as typeof fetch;
  const chatFetch = guarded((message) => new LlmError('rejected', message));
  const embeddingFetch = guarded((message) => new EmbeddingError(message, false));

  return {
    async chatFor(orgId) {
      const provider = await load(orgId);
      if (!provider) return { source: 'deployment', client: deps.deployment.llm };
      return {
        source: 'org',
        client: new LlmClient({ baseUrl: provider.baseUrl, apiKey: provider.apiKey, timeoutMs: deps.timeoutMs, fetch: chatFetch }),
        model: provider.defaultModel,
        host: new URL(provider.baseUrl).host,
      };
    },
    async embedderFor(orgId) {
      const provider = await load(orgId);
      if (!provider) return deps.deployment.embedder;
      // An org on its own provider embeds there or not at all: its documents never go to the
      // deployment's provider behind its back (docs/agent-runtime.md, "The org's own model").
      if (!provider.embeddingModel) return undefined;
      return new EmbeddingsClient({ baseUrl: provider.baseUrl, apiKey: provider.apiKey, model: provider.embeddingModel, timeoutMs: deps.timeoutMs, fetch: embeddingFetch });
    },
  };
}
