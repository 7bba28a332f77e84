import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/**
 * Custom search attributes, registered on the cluster (the dev server registers them at start)
 * so ops can filter runs in the Temporal UI, e.g. `OrgId = "…"`. Few and typed on purpose:
 * SQL visibility stores have a fixed number of slots per type.
 */
export const OrgIdSearchAttribute = defineSearchAttributeKey('OrgId', SearchAttributeType.KEYWORD);
export const AgentIdSearchAttribute = defineSearchAttributeKey('AgentId', SearchAttributeType.KEYWORD);
/** A `WorkflowRunStatus` (lib/run-status.ts), kept current by agentRun. */
export const RunStatusSearchAttribute = defineSearchAttributeKey('RunStatus', SearchAttributeType.KEYWORD);

/** Name → type as the CLI's `--search-attribute Name=Type` expects, for registering them on a cluster. */
export const customSearchAttributes = {
  OrgId: 'Keyword',
  AgentId: 'Keyword',
  RunStatus: 'Keyword',
} as const satisfies Record<string, 'Keyword' | 'Text' | 'Int' | 'Double' | 'Bool' | 'Datetime' | 'KeywordList'>;
