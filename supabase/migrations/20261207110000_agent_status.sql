-- The team's rules, part 1: an agent is `active` or `paused`.
--
-- A paused agent starts nothing (CRM triggers, lead messages, API starts answer 409
-- `agent-paused`) and its open conversations stop replying at their next turn: the lead's
-- messages are still recorded, they are not answered. A column of the agent, read and written
-- with it (admins write, members and the org's worker read), like busy_policy.

alter table public.agents
  add column status text not null default 'active' check (status in ('active', 'paused'));

grant insert (status) on public.agents to authenticated;
grant update (status) on public.agents to authenticated;
