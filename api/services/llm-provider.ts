import type pg from 'pg';
import { encryptSecret, type Keyring } from '../../lib/crypto.js';
import { withPrincipal, type Tx } from '../../lib/db.js';
import { ORG_LLM_KEY_COLUMN, keyHintOf } from '../../lib/org-llm.js';
import type { Principal } from '../../lib/principal.js';
import { assertPublicUrl, UnsafeUrlError, type SsrfPolicy } from '../../lib/ssrf.js';
import { ProblemError } from '../problems.js';
import { requireOrgRole } from './org-access.js';

/**
 * The org's own LLM provider (issue 15, item 4): members read the settings, admins set or remove
 * them. The key is encrypted at once (lib/crypto.ts, bound to the org and column) and never
 * answered again; answers say only whether one is set and its last four characters. The base URL
 * passes the SSRF guard here (a clear 400) and again at every call (integrations/llm/org-provider.ts).
 * Changes are audited by the database (private.audit_llm_provider).
 */

export interface LlmProviderView {
  /** Whose provider the org's runs use: its own, or the service's (LLM_BASE_URL). */
  source: 'org' | 'deployment';
  provider: {
    baseUrl: string;
    defaultModel: string;
    embeddingModel: string | null;
    keySet: true;
    keyHint: string | null;
    keyUpdatedAt: string;
    updatedBy: string | null;
    updatedAt: string;
  } | null;
}

export interface LlmProviderInput {
  baseUrl: string;
  apiKey?: string | undefined;
  defaultModel: string;
  embeddingModel?: string | null | undefined;
}

interface ProviderRow {
  base_url: string;
  default_model: string;
  embedding_model: string | null;
  key_hint: string | null;
  key_updated_at: Date;
  updated_by: string | null;
  updated_at: Date;
}

const columns = 'base_url, default_model, embedding_model, key_hint, key_updated_at, updated_by, updated_at';

function toView(row: ProviderRow | undefined): LlmProviderView {
  if (!row) return { source: 'deployment', provider: null };
  return {
    source: 'org',
    provider: {
      baseUrl: row.base_url,
      defaultModel: row.default_model,
      embeddingModel: row.embedding_model,
      keySet: true,
      keyHint: row.key_hint,
      keyUpdatedAt: row.key_updated_at.toISOString(),
      updatedBy: row.updated_by,
      updatedAt: row.updated_at.toISOString(),
    },
  };
}

const invalid = (path: string, message: string) => new ProblemError('validation-error', `${path}: ${message}`, [{ path, message }]);

export function createLlmProviderService(deps: { pool: pg.Pool; keyring: Keyring; ssrf?: SsrfPolicy }) {
  /** https only (plain http only for allowlisted development hosts), and a public address. */
  async function assertProviderUrl(raw: string): Promise<string> {
    try {
      const url = await assertPublicUrl(raw, deps.ssrf);
      const allowed = (deps.ssrf?.allowedHosts ?? []).some((h) => h.toLowerCase() === url.host.toLowerCase() || h.toLowerCase() === url.hostname.toLowerCase());
      if (url.protocol !== 'https:' && !allowed) throw invalid('body.baseUrl', 'must use https');
      if (url.search || url.hash) throw invalid('body.baseUrl', 'must not carry a query or fragment (the API paths are appended to it)');
      return url.toString().replace(/\/+$/, '');
    } catch (err) {
      if (err instanceof UnsafeUrlError) throw invalid('body.baseUrl', err.message);
      throw err;
    }
  }

  async function load(tx: Tx, orgId: string): Promise<ProviderRow | undefined> {
    const { rows } = await tx.query<ProviderRow>(`select ${columns} from public.org_llm_providers where org_id = $1`, [orgId]);
    return rows[0];
  }

  async function getProvider(principal: Principal, orgId: string): Promise<LlmProviderView> {
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'member');
      return toView(await load(tx, orgId));
    });
  }

  async function setProvider(principal: Principal, orgId: string, input: LlmProviderInput): Promise<LlmProviderView> {
    // The role first (outsiders learn nothing, and make us resolve nothing); the URL outside any
    // transaction, because resolving it is a network call.
    await withPrincipal(deps.pool, principal, (tx) => requireOrgRole(tx, orgId, 'admin'));
    const baseUrl = await assertProviderUrl(input.baseUrl);
    return withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const current = await load(tx, orgId);
      // A kept key never follows the provider to another address: pointing the org's existing key
      // at a new URL would hand it to whoever serves that URL, so a new URL needs the key again.
      if (input.apiKey === undefined) {
        if (!current) throw invalid('body.apiKey', 'is required when the organization has no provider yet');
        if (current.base_url !== baseUrl) throw invalid('body.apiKey', 'is required when the base URL changes');
      }
      const updatedBy = principal.kind === 'user' ? principal.userId : null;
      const keyChanged = input.apiKey !== undefined;
      await tx.query(
        `insert into public.org_llm_providers (org_id, base_url, default_model, embedding_model, key_hint, updated_by)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (org_id) do update set
           base_url = excluded.base_url, default_model = excluded.default_model, embedding_model = excluded.embedding_model,
           key_hint = case when $7 then excluded.key_hint else org_llm_providers.key_hint end,
           key_updated_at = case when $7 then now() else org_llm_providers.key_updated_at end,
           updated_by = excluded.updated_by, updated_at = now()`,
        [orgId, baseUrl, input.defaultModel, input.embeddingModel ?? null, keyChanged ? keyHintOf(input.apiKey!) : null, updatedBy, keyChanged],
      );
      if (keyChanged) {
        await tx.query(
          `insert into public.org_llm_provider_keys (org_id, api_key) values ($1, $2)
           on conflict (org_id) do update set api_key = excluded.api_key`,
          [orgId, encryptSecret(deps.keyring, input.apiKey!, { orgId, rowId: orgId, column: ORG_LLM_KEY_COLUMN })],
        );
      }
      return toView(await load(tx, orgId));
    });
  }

  /** Back to the service's provider; the key goes with the settings (cascade). Idempotent. */
  async function deleteProvider(principal: Principal, orgId: string): Promise<void> {
    await withPrincipal(deps.pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await tx.query(`delete from public.org_llm_providers where org_id = $1`, [orgId]);
    });
  }

  return { getProvider, setProvider, deleteProvider };
}

export type LlmProviderService = ReturnType<typeof createLlmProviderService>;
