/** One tool call: arguments validated against the tool's schema, executed, its result recorded as one event. */
import { Context } from '@temporalio/activity';
import { autocommitEachAsPrincipal, withPrincipal } from '../../lib/db.js';
import { runEffectOnce, type JsonValue } from '../effects.js';
import { HANDOFF_TOOL } from '../tools/builtin.js';
import { ToolError, type AgentTool, type ToolContext } from '../tools/registry.js';
import type { ToolCallRef, ToolStepResult } from './contract.js';
import type { ResolvedAgentRunDeps } from './deps.js';
import { appendEvent, loadToolCall, workerOf } from './run-store.js';

/**
 * What the model's raw JSON arguments are for `tool`: the parsed arguments, or the error the
 * model should see (so it can fix them and call again).
 */
export function parseToolArguments(tool: Pick<AgentTool, 'name' | 'parameters'>, raw: string): { args: unknown } | { error: string } {
  let rawArgs: unknown;
  try {
    rawArgs = raw.trim() === '' ? {} : JSON.parse(raw);
  } catch {
    return { error: `The arguments of ${tool.name} are not valid JSON. Send a JSON object matching the tool's schema.` };
  }
  const parsed = tool.parameters.safeParse(rawArgs);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(arguments)'}: ${i.message}`).join('; ');
    return { error: `Invalid arguments for ${tool.name}: ${problems}. Fix them and call the tool again.` };
  }
  return { args: parsed.data };
}

export function createToolStepActivities({ pool, tools }: Pick<ResolvedAgentRunDeps, 'pool' | 'tools'>) {
  /**
   * Validates and executes tool call `index` of LLM turn `llmSeq`, recording its result (or the
   * error the model should see) as event `seq`. Control tools only validate and return what
   * the workflow should do. Effect tools get `${workflowId}:tool-${seq}` as idempotency key.
   */
  async function executeTool(call: ToolCallRef): Promise<ToolStepResult> {
    const ctx = Context.current();
    // Loading the call and recording its result are one statement each: one round trip apiece.
    const db = autocommitEachAsPrincipal(pool, workerOf(call.orgId));
    const { toolCall, config, recorded } = await loadToolCall(db, call, true);
    if (recorded) {
      // A retry after the handoff was recorded must still hand the conversation over.
      if (recorded.payload.name === HANDOFF_TOOL && recorded.payload.error === undefined) return { outcome: 'control', control: { type: 'handoff' } };
      return { outcome: recorded.payload.error !== undefined ? 'error' : 'completed' };
    }

    const record = async (payload: { result: JsonValue } | { error: string }): Promise<ToolStepResult> => {
      await appendEvent(db, call, 'tool.completed', { toolCallId: toolCall.id, name: toolCall.function.name, ...payload });
      return { outcome: 'error' in payload ? 'error' : 'completed' };
    };

    const name = toolCall.function.name;
    const tool = config.allowed_tools.includes(name) ? tools.get(name) : undefined;
    if (!tool) {
      const available = config.allowed_tools.filter((t) => tools.get(t)).join(', ') || 'none';
      return record({ error: `Unknown tool "${name}". Tools available to you: ${available}.` });
    }
    const parsed = parseToolArguments(tool, toolCall.function.arguments);
    if ('error' in parsed) return record(parsed);

    if (tool.kind === 'control') {
      const control = tool.control!(parsed.args);
      if (control.type === 'sleep') {
        // The model learns the follow-up was scheduled; the workflow sleeps after this returns.
        await record({ result: { scheduled: true, resumesAfterSeconds: control.seconds } });
      }
      if (control.type === 'handoff') {
        // The model learns it may tell the lead a colleague takes over; the workflow hands off after this returns.
        await record({ result: { handedOff: true, note: 'A person from the sales team takes over this chat; you will not receive further messages for now.' } });
      }
      return { outcome: 'control', control };
    }

    const info = ctx.info;
    // Standalone activities have no workflow; agent tools always run inside agentRun. The key is
    // `tool-<result seq>`, the id the workflow gives a regular tool activity; a local activity's
    // own id is a counter that restarts with each execution, so it is not used.
    const idempotencyKey = `${info.workflowExecution?.workflowId ?? `run:${call.runId}`}:tool-${call.seq}`;
    const toolContext: ToolContext = {
      orgId: call.orgId,
      runId: call.runId,
      agentId: config.agent_id,
      toolName: tool.name,
      idempotencyKey,
      signal: ctx.cancellationSignal,
      // A local activity (read and control tools) cannot heartbeat; its liveness is the workflow task's.
      heartbeat: () => {
        if (!info.isLocal) ctx.heartbeat();
      },
      withOrgScope: (fn) => withPrincipal(pool, workerOf(call.orgId), fn),
      runEffectOnce: (effect, recordRows) => runEffectOnce({ pool, orgId: call.orgId, runId: call.runId, toolName: tool.name }, idempotencyKey, effect, recordRows),
    };
    let result: JsonValue;
    try {
      result = await tool.execute!(parsed.args, toolContext);
    } catch (err) {
      if (err instanceof ToolError) return record({ error: err.message });
      throw err;
    }
    return record({ result });
  }

  return { executeTool };
}
