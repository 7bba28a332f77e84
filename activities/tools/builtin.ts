import { z } from 'zod';
import { defineTool, ToolRegistry, type AgentTool } from './registry.js';

const MAX_FOLLOW_UP_SECONDS = 30 * 24 * 3600;

/** Postgres full-text search over the org's knowledge documents (RLS: the run's org only). */
export const knowledgeSearch = defineTool({
  name: 'knowledge_search',
  description: "Searches the organization's knowledge base (product facts, pricing, playbooks). Returns the best matching documents with an excerpt.",
  kind: 'read',
  parameters: z.strictObject({
    query: z.string().min(1).max(500).describe('Words to search for'),
    limit: z.number().int().min(1).max(10).optional().describe('How many documents to return (default 5)'),
  }),
  async execute(args, ctx) {
    const rows = await ctx.withOrgScope(async (tx) => {
      const result = await tx.query<{ id: string; title: string; excerpt: string; rank: number }>(
        `select d.id, d.title,
                ts_headline('simple', d.body, q, 'MaxWords=40, MinWords=15, MaxFragments=2') as excerpt,
                ts_rank(d.search, q) as rank
           from public.knowledge_documents d, websearch_to_tsquery('simple', $2) q
          where d.org_id = $1 and d.search @@ q
          order by rank desc, d.created_at desc
          limit $3`,
        [ctx.orgId, args.query, args.limit ?? 5],
      );
      return result.rows;
    });
    return { results: rows.map((r) => ({ id: r.id, title: r.title, excerpt: r.excerpt })) };
  },
});

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

export const builtinTools: AgentTool[] = [knowledgeSearch, requestHumanInput, scheduleFollowUp] as AgentTool[];

/** The registry workers use: the built-ins plus whatever `extra` tools (CRM tools, test tools) are given. */
export function createToolRegistry(extra: AgentTool[] = []): ToolRegistry {
  return new ToolRegistry().register(...builtinTools, ...extra);
}
