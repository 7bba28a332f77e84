-- The team's rules, part 3: human handoff. When a salesperson writes in the lead's thread, the
-- lead asks for a person, or the agent calls `handoff_to_human`, the conversation stops answering
-- for the agent's `handoff_minutes` (default 24 h) or until a member resumes it through the API.
--
-- The state lives on the conversation's run row (one handoff at a time per conversation), next
-- to and separate from the reply flags: `handoff_until` (answering resumes after it; null = no
-- handoff), why and since when, and `handoff_key`, the cause's id, which makes a retried request
-- (an activity retry, a redelivered webhook) one handoff with one CRM task. A resume clears
-- `handoff_until` and keeps the key, so a late retry of the same cause does not hand off again.
-- Written by the org's worker only (agent_runs_update_worker), through the conversation
-- workflow: a member's resume goes through the workflow too.

alter table public.agents
  add column handoff_minutes int not null default 1440 check (handoff_minutes between 1 and 43200);

grant insert (handoff_minutes) on public.agents to authenticated;
grant update (handoff_minutes) on public.agents to authenticated;

alter table public.agent_runs
  add column handoff_until timestamptz,
  add column handoff_reason text check (handoff_reason in ('salesperson_replied', 'lead_asked', 'agent_requested')),
  add column handoff_at timestamptz,
  add column handoff_key text check (char_length(handoff_key) <= 200);

grant update (handoff_until, handoff_reason, handoff_at, handoff_key) on public.agent_runs to authenticated;
