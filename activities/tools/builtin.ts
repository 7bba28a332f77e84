import { z } from 'zod';
import type { LlmRoutes } from '../../integrations/llm/org-provider.js';
import { searchKnowledge, type QueryEmbedding } from '../knowledge/search.js';
import { defineTool, ToolRegistry, type AgentTool } from './registry.js';

const MAX_FOLLOW_UP_SECONDS = 30 * 24 * 3600;

/** Turns a query into its embedding with the org's embedding model; absent where there is none. */
export type QueryEmbedder = (orgId: string, query: string) => Promise<QueryEmbedding | undefined>;

/** The query embedder of each org's own embedding model (its provider's, else the deployment's; see org-provider.ts). */
export function queryEmbedderOf(routes: Pick<LlmRoutes, 'embedderFor'>): QueryEmbedder {
  return async (orgId, query) => {
    const embedder = await routes.embedderFor(orgId);
    return embedder ? { model: embedder.model, vector: (await embedder.embed([query]))[0]! } : undefined;
  };
}

/**
 * Searches the org's knowledge chunks (activities/knowledge/search.ts: stemmed full text,
 * trigram vocabulary and, with an embedder, vectors) under the run's org scope (RLS).
 */
export function createKnowledgeSearchTool(opts: { embedQuery?: QueryEmbedder } = {}) {
  return defineTool({
    name: 'knowledge_search',
    description:
      "Searches the organization's knowledge base (product facts, pricing, terms, playbooks) in any language. Returns passages with their document title and position. When you use a passage, cite it as [title, passage N].",
    kind: 'read',
    parameters: z.strictObject({
      query: z.string().min(1).max(500).describe('What to look for, in the words a document would use'),
      limit: z.number().int().min(1).max(10).optional().describe('How many passages to return (default 5)'),
    }),
    async execute(args, ctx) {
      const embedding = opts.embedQuery ? await opts.embedQuery(ctx.orgId, args.query) : undefined;
      const hits = await ctx.withOrgScope((tx) => searchKnowledge(tx, { orgId: ctx.orgId, query: args.query, limit: args.limit ?? 5, embedding }));
      return {
        results: hits.map((h) => ({
          documentId: h.documentId,
          title: h.title,
          position: h.position,
          passage: h.passage,
          citation: `[${h.title}, passage ${h.position + 1}]`,
        })),
      };
    },
  });
}

export const knowledgeSearch = createKnowledgeSearchTool();

/** Asks a person a question; the run waits for the answer (through the approvals endpoint). */
export const requestHumanInput = defineTool({
  name: 'request_human_input',
  description: 'Asks a person on the sales team a question and waits for their answer. Use when you need information or a decision only a person can give.',
  kind: 'control',
  parameters: z.strictObject({ question: z.string().min(1).max(2000).describe('The question, self-contained') }),
  control: () => ({ type: 'human_input' }),
});

/** Sleeps the run durably and resumes it later (a Temporal timer; the run can be cancelled meanwhile). */
export const scheduleFollowUp = defineTool({
  name: 'schedule_follow_up',
  description: 'Pauses this task and resumes it after the given delay, e.g. to check back on a lead in two days.',
  kind: 'control',
  parameters: z.strictObject({
    delay_seconds: z.number().int().min(1).max(MAX_FOLLOW_UP_SECONDS).describe('How long to wait before resuming'),
    reason: z.string().max(500).optional().describe('What to do when resuming'),
  }),
  control: (args) => ({ type: 'sleep', seconds: args.delay_seconds }),
});

export const HANDOFF_TOOL = 'handoff_to_human';

/**
 * Hands the lead's conversation to people: the agent stops answering it for the agent's
 * `handoffMinutes` (or until a member resumes it) and a CRM task goes to the lead's responsible
 * user. The workflow performs it (activities/agent-run/handoff.ts); the model may still write a
 * last answer telling the lead a colleague takes over.
 */
export const handoffToHuman = defineTool({
  name: HANDOFF_TOOL,
  description:
    'Hands this conversation to a person on the sales team: use it when the lead asks for a person, is upset, or needs something only a person can do. After it you will not answer this lead for a while; tell them a colleague will reply soon.',
  kind: 'control',
  parameters: z.strictObject({ reason: z.string().max(500).optional().describe('Why a person should take over') }),
  control: () => ({ type: 'handoff' }),
});

export const builtinTools: AgentTool[] = [knowledgeSearch, requestHumanInput, scheduleFollowUp, handoffToHuman] as AgentTool[];

/** The registry workers use: the built-ins plus whatever `extra` tools (CRM tools, test tools) are given. */
export function createToolRegistry(extra: AgentTool[] = [], opts: { embedQuery?: QueryEmbedder } = {}): ToolRegistry {
  const tools = opts.embedQuery ? builtinTools.map((t) => (t.name === 'knowledge_search' ? (createKnowledgeSearchTool(opts) as AgentTool) : t)) : builtinTools;
  return new ToolRegistry().register(...tools, ...extra);
}
