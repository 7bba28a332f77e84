import type pg from 'pg';
import type { CredentialStore } from '../../integrations/crm/credentials.js';
import type { LlmClient } from '../../integrations/llm/chat-completions.js';
import { deploymentRoutes, type LlmRoutes } from '../../integrations/llm/org-provider.js';
import type { Logger } from '../../lib/logger.js';
import type { OrgEventPublisher } from '../org-events/publish.js';
import { DEFAULT_PRICES, type PriceTable } from '../../lib/pricing.js';
import { DEFAULT_SPEND_SETTINGS, type SpendSettings } from '../../lib/spend.js';
import { createToolRegistry } from '../tools/builtin.js';
import type { ToolRegistry } from '../tools/registry.js';

export interface AgentRunActivityDeps {
  pool: pg.Pool;
  /** The deployment's model (LLM_BASE_URL/LLM_API_KEY). */
  llm: LlmClient;
  /** Routes each org's calls to its own provider when it set one; without it every org uses `llm`. */
  routes?: LlmRoutes;
  logger: Logger;
  /** Tools agents may call; defaults to the built-ins. */
  tools?: ToolRegistry;
  /** USD per million tokens by model; defaults to DEFAULT_PRICES. */
  prices?: PriceTable;
  /** How often a long LLM call reports liveness; must be well below the activity's heartbeatTimeout. */
  heartbeatIntervalMs?: number;
  /** Stream LLM answers and publish token deltas for live views (default true). */
  streamDeltas?: boolean;
  /** Opens CRM connections for replies into a lead's thread; without it such replies fail as `reply_failed`. */
  credentials?: CredentialStore | null;
  /** Tells the org's people (webhooks, live feed) about approvals, failures, handoffs; without it nobody is told. */
  events?: OrgEventPublisher | null;
  /** The operator's spend ceilings for orgs and agents that set none (default DEFAULT_SPEND_SETTINGS). */
  spend?: SpendSettings;
}

/** The deps with their defaults applied: what each group of activities is built from. */
export type ResolvedAgentRunDeps = Required<Omit<AgentRunActivityDeps, 'logger'>> & Pick<AgentRunActivityDeps, 'logger'>;

export function resolveDeps(deps: AgentRunActivityDeps): ResolvedAgentRunDeps {
  return {
    ...deps,
    routes: deps.routes ?? deploymentRoutes(deps.llm),
    tools: deps.tools ?? createToolRegistry(),
    prices: deps.prices ?? DEFAULT_PRICES,
    heartbeatIntervalMs: deps.heartbeatIntervalMs ?? 5_000,
    streamDeltas: deps.streamDeltas ?? true,
    credentials: deps.credentials ?? null,
    events: deps.events ?? null,
    spend: deps.spend ?? DEFAULT_SPEND_SETTINGS,
  };
}
