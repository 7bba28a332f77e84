/**
 * The agent's tool registry: one place where every tool an agent can call is declared, for the
 * LLM (name, description, JSON schema of the arguments) and for the runtime (typed execution).
 *
 * How to add a tool (the CRM tools of issue 5 plug in exactly like the built-ins):
 *
 * ```ts
 * registry.register(defineTool({
 *   name: 'crm_add_note',                        // ^[a-z][a-z0-9_]{0,63}$, what agents list in allowedTools
 *   description: 'Adds a note to a CRM record',  // shown to the model
 *   kind: 'effect',                              // 'read' | 'effect' | 'control', see ToolKind
 *   parameters: z.strictObject({ recordId: z.string(), text: z.string().max(5000) }),
 *   async execute(args, ctx) {                   // args are parsed and typed by `parameters`
 *     const { result } = await ctx.runEffectOnce(async () => {
 *       // call the CRM with ctx.idempotencyKey as its idempotency key (no transaction is open)
 *       return { noteId: '…' };                  // JSON; recorded in the ledger and shown to the model
 *     }, async (tx, note) => {});               // optional: our own rows that follow, with the ledger entry
 *     return result;
 *   },
 * }));
 * ```
 *
 * Rules every tool follows:
 * - Runs inside a Temporal activity (`executeTool`), retried on failure. Throw
 *   `ToolError` for failures the model should see and react to (not found, invalid input the
 *   schema could not catch); any other error is retried by Temporal and, once retries are
 *   exhausted, fails the run.
 * - Arguments and results are tenant data: the runtime stores them in Postgres (run_events) and
 *   passes only ids through Temporal. A tool returns JSON (keep it small: it goes back into
 *   the model's context) and never secrets.
 * - Database access goes through `ctx.withOrgScope` (the worker principal of the run's org,
 *   so RLS applies) or the `tx` that `runEffectOnce` hands its `record` step.
 * - An `effect` tool changes something outside the run and MUST perform that change inside
 *   `ctx.runEffectOnce`, so a retry after the effect returns the recorded result.
 * - Long work calls `ctx.heartbeat()` and honours `ctx.signal` (cancellation of the run).
 * - Invalid arguments from the model never reach `execute`: the runtime answers the model with
 *   a tool error listing the schema problems, and the model may try again.
 */
import { z } from 'zod';
import type { Tx } from '../../lib/db.js';
import type { ToolDefinition } from '../../integrations/llm/types.js';
import type { JsonValue } from '../effects.js';

/**
 * - `read`: no side effect; safe to repeat on retry (knowledge_search, crm_search_records).
 * - `effect`: changes something; performs it through `ctx.runEffectOnce` (crm_add_note).
 * - `control`: changes the run itself (sleep, ask a person). The activity only validates the
 *   arguments and returns a small `ToolControl`; the workflow performs it durably.
 */
export type ToolKind = 'read' | 'effect' | 'control';

/** What a control tool asks the workflow to do. Small and free of tenant text: it goes into history. */
export type ToolControl = { type: 'sleep'; seconds: number } | { type: 'human_input' } | { type: 'handoff' };

export interface ToolContext {
  orgId: string;
  runId: string;
  agentId: string;
  toolName: string;
  /** `${workflowId}:tool-${seq}` (the id of a regular tool activity): stable across retries of this tool call, unique per call. */
  idempotencyKey: string;
  /** Aborted when the run is cancelled (delivered through heartbeats). */
  signal: AbortSignal;
  heartbeat(): void;
  /** A transaction as the worker principal of the run's org. */
  withOrgScope<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /**
   * Performs `effect` (the external call, no transaction open) at most once for this tool call,
   * then `record(tx, result)` (our own rows that follow it) with the ledger entry; see activities/effects.ts.
   */
  runEffectOnce<T extends JsonValue>(effect: () => Promise<T>, record?: (tx: Tx, result: T) => Promise<void>): Promise<{ result: T; replayed: boolean }>;
}

export interface AgentTool<S extends z.ZodType = z.ZodType> {
  name: string;
  description: string;
  kind: ToolKind;
  parameters: S;
  /** For `read` and `effect` tools. */
  execute?(args: z.infer<S>, ctx: ToolContext): Promise<JsonValue>;
  /** For `control` tools: what the workflow should do, derived from validated arguments. */
  control?(args: z.infer<S>): ToolControl;
}

/** Identity function that keeps `execute`'s argument type tied to `parameters`. */
export function defineTool<S extends z.ZodType>(tool: AgentTool<S>): AgentTool<S> {
  return tool;
}

/** A failure the model should see as the tool's answer, rather than a retry or a failed run. */
export class ToolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ToolError';
  }
}

const TOOL_NAME = /^[a-z][a-z0-9_]{0,63}$/;

export class ToolRegistry {
  readonly #tools = new Map<string, AgentTool>();

  register(...tools: AgentTool[]): this {
    for (const tool of tools) {
      if (!TOOL_NAME.test(tool.name)) throw new Error(`Tool name ${JSON.stringify(tool.name)} must match ${TOOL_NAME}`);
      if (this.#tools.has(tool.name)) throw new Error(`Tool ${tool.name} is already registered`);
      if (tool.kind === 'control' ? !tool.control : !tool.execute) {
        throw new Error(`Tool ${tool.name} of kind ${tool.kind} needs ${tool.kind === 'control' ? 'control()' : 'execute()'}`);
      }
      this.#tools.set(tool.name, tool);
    }
    return this;
  }

  get(name: string): AgentTool | undefined {
    return this.#tools.get(name);
  }

  names(): string[] {
    return [...this.#tools.keys()];
  }

  /** OpenAI function-calling definitions of the registered tools among `allowed`, in that order. */
  definitionsFor(allowed: readonly string[]): ToolDefinition[] {
    return allowed.flatMap((name) => {
      const tool = this.#tools.get(name);
      if (!tool) return [];
      const { $schema: _ignored, ...parameters } = z.toJSONSchema(tool.parameters, { io: 'input' }) as Record<string, unknown>;
      return [{ type: 'function' as const, function: { name: tool.name, description: tool.description, parameters } }];
    });
  }
}
