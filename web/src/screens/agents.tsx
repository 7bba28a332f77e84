import { api, ApiProblem, ok } from '../api/client';
import type { paths } from '../api/schema';
import { href } from '../state/route';
import { AGENT_TOOLS } from '../state/tools';
import { ErrorBox, formValues, Loading, Page, useAction, useLoad } from '../ui';

type AgentBody = paths['/v1/orgs/{orgId}/agents']['post']['requestBody']['content']['application/json'];

/** `checking`: the org was opened from memory and the org list has not answered yet. */
export function AgentList({ orgId, admin, checking = false }: { orgId: string; admin: boolean; checking?: boolean }) {
  const agents = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/agents', { params: { path: { orgId }, query: { limit: 100 } } })).items, [orgId]);
  // A 404 then means the user is no longer a member: the shell moves on when the list answers, so
  // showing the error would only flash it.
  const gone = checking && agents.error instanceof ApiProblem && agents.error.problem.status === 404;
  return (
    <Page title="Agents" actions={admin && <a class="button" href={href({ name: 'new-agent', orgId })}>New agent</a>}>
      <ErrorBox error={gone ? null : agents.error} />
      {(agents.loading || gone) && <Loading what="agents" />}
      {agents.data?.length === 0 && <p>No agents yet.{admin ? ' Create one to start working leads.' : ''}</p>}
      <ul class="cards">
        {agents.data?.map((agent) => (
          <li key={agent.id} class="card">
            <h2>
              <a href={href({ name: 'agent', orgId, agentId: agent.id })}>{agent.name}</a>
            </h2>
            <p class="muted">
              {agent.model} · {agent.allowedTools.length} tools · {agent.approvalTools.length} need approval
            </p>
            <a href={href({ name: 'runs', orgId, agentId: agent.id })}>Runs</a>
          </li>
        ))}
      </ul>
    </Page>
  );
}

const checked = (values: FormData, prefix: string) => AGENT_TOOLS.map((t) => t.name).filter((name) => values.get(`${prefix}:${name}`) === 'on');

/** Create or edit an agent: instructions, model, tools, approvals, budgets, CRM and triggers. */
export function AgentEditor({ orgId, agentId, admin }: { orgId: string; agentId?: string; admin: boolean }) {
  const agent = useLoad(
    async () => (agentId ? ok(await api.GET('/v1/orgs/{orgId}/agents/{agentId}', { params: { path: { orgId, agentId } } })) : null),
    [orgId, agentId],
  );
  const connections = useLoad(
    async () => ok(await api.GET('/v1/orgs/{orgId}/crm/connections', { params: { path: { orgId } } })).items,
    [orgId],
  );
  const save = useAction(async (form: HTMLFormElement) => {
    const values = new FormData(form);
    const text = (name: string) => String(values.get(name) ?? '');
    const triggersText = text('triggers').trim();
    let triggers: AgentBody['triggers'];
    try {
      triggers = triggersText ? (JSON.parse(triggersText) as AgentBody['triggers']) : [];
    } catch {
      throw new Error('Activation rules must be JSON, for example [{"event":"incoming_message"}].');
    }
    const body: AgentBody = {
      name: text('name'),
      model: text('model'),
      instructions: text('instructions'),
      temperature: Number(text('temperature')),
      maxOutputTokens: Number(text('maxOutputTokens')),
      maxSteps: Number(text('maxSteps')),
      allowedTools: checked(values, 'allow'),
      approvalTools: checked(values, 'approve'),
      runTokenBudget: text('runTokenBudget') ? Number(text('runTokenBudget')) : null,
      busyPolicy: text('busyPolicy') as NonNullable<AgentBody['busyPolicy']>,
      approvalTimeoutSeconds: Math.round(Number(text('approvalTimeoutHours')) * 3600),
      crmConnectionId: text('crmConnectionId') || null,
      triggers,
    };
    if (agentId) {
      ok(await api.PATCH('/v1/orgs/{orgId}/agents/{agentId}', { params: { path: { orgId, agentId } }, body }));
      agent.reload();
    } else {
      const created = ok(await api.POST('/v1/orgs/{orgId}/agents', { params: { path: { orgId } }, body }));
      location.hash = href({ name: 'agent', orgId, agentId: created.id });
    }
  });
  const start = useAction(async (values: Record<string, string>) => {
    const run = ok(await api.POST('/v1/orgs/{orgId}/agents/{agentId}/runs', { params: { path: { orgId, agentId: agentId! } }, body: { input: values.input ?? '' } }));
    location.hash = href({ name: 'run', orgId, runId: run.id });
  });

  if (agent.loading) return <Loading what="the agent" />;
  if (agent.error) return <ErrorBox error={agent.error} />;
  const a = agent.data;
  return (
    <Page title={a ? a.name : 'New agent'}>
      {a && (
        <form class="stack card" onSubmit={(e) => void start.run(formValues(e))}>
          <h2>Start a run</h2>
          <label>
            Task for the agent
            <textarea name="input" required rows={2} placeholder="Draft a two-line follow-up for a lead who asked about pricing." />
          </label>
          <ErrorBox error={start.error} />
          <button type="submit" disabled={start.busy}>
            Start run
          </button>
        </form>
      )}
      {/* Uncontrolled fields (defaults from the stored agent, re-keyed when it changes), so a late
          re-render, e.g. the CRM connections arriving, never wipes what the user typed. */}
      <form
        key={a?.updatedAt ?? 'new'}
        class="stack"
        onSubmit={(e) => {
          e.preventDefault();
          void save.run(e.currentTarget);
        }}
      >
        <fieldset disabled={!admin} class="stack">
          <legend>Settings{admin ? '' : ' (admins can change them)'}</legend>
          <label>
            Name
            <input name="name" required maxLength={200} defaultValue={a?.name ?? ''} />
          </label>
          <label>
            Model
            <input name="model" required maxLength={200} defaultValue={a?.model ?? 'openai/gpt-4o-mini'} />
          </label>
          <label>
            Instructions
            <textarea name="instructions" rows={8} defaultValue={a?.instructions ?? ''} />
          </label>
          <div class="row">
            <label>
              Temperature
              <input name="temperature" type="number" min={0} max={2} step={0.1} defaultValue={a?.temperature ?? 0.3} />
            </label>
            <label>
              Max output tokens
              <input name="maxOutputTokens" type="number" min={1} max={200000} defaultValue={a?.maxOutputTokens ?? 1024} />
            </label>
            <label>
              Max steps per run
              <input name="maxSteps" type="number" min={1} max={100} defaultValue={a?.maxSteps ?? 8} />
            </label>
            <label>
              Token budget per run
              <input name="runTokenBudget" type="number" min={1} placeholder="no limit" defaultValue={a?.runTokenBudget ?? ''} />
            </label>
          </div>
          <fieldset>
            <legend>Tools</legend>
            <table class="tools">
              <thead>
                <tr>
                  <th scope="col">Tool</th>
                  <th scope="col">Allowed</th>
                  <th scope="col">Needs approval</th>
                </tr>
              </thead>
              <tbody>
                {AGENT_TOOLS.map((tool) => (
                  <tr key={tool.name}>
                    <th scope="row">{tool.label}</th>
                    <td>
                      <input type="checkbox" name={`allow:${tool.name}`} aria-label={`Allow: ${tool.label}`} defaultChecked={a?.allowedTools.includes(tool.name) ?? false} />
                    </td>
                    <td>
                      <input type="checkbox" name={`approve:${tool.name}`} aria-label={`Needs approval: ${tool.label}`} defaultChecked={a?.approvalTools.includes(tool.name) ?? false} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </fieldset>
          <div class="row">
            <label>
              Approvals expire after (hours)
              <input name="approvalTimeoutHours" type="number" min={0.01} step={0.01} defaultValue={a ? a.approvalTimeoutSeconds / 3600 : 24} />
            </label>
            <label>
              When a message arrives mid-turn
              <select name="busyPolicy">
                <option value="queue" selected={(a?.busyPolicy ?? 'queue') === 'queue'}>Queue it</option>
                <option value="interrupt" selected={a?.busyPolicy === 'interrupt'}>Interrupt the turn</option>
                <option value="reject" selected={a?.busyPolicy === 'reject'}>Reject it</option>
              </select>
            </label>
            <label>
              CRM connection
              <select name="crmConnectionId">
                <option value="" selected={!a?.crmConnectionId}>None</option>
                {connections.data?.map((c) => (
                  <option key={c.id} value={c.id} selected={a?.crmConnectionId === c.id}>
                    {c.name} ({c.provider})
                  </option>
                ))}
              </select>
            </label>
          </div>
          <label>
            Activation rules (JSON: lead_stage_entered with stageId, or incoming_message)
            <textarea name="triggers" rows={3} defaultValue={a && a.triggers.length > 0 ? JSON.stringify(a.triggers) : ''} placeholder='[{"event":"incoming_message"}]' />
          </label>
          <ErrorBox error={save.error} />
          {admin && (
            <button type="submit" disabled={save.busy}>
              {a ? 'Save changes' : 'Create agent'}
            </button>
          )}
        </fieldset>
      </form>
    </Page>
  );
}
