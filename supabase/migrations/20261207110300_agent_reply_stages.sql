-- The team's rules, part 4: stage scoping. The pipelines and stages in which the agent may
-- reply: a message from a lead whose deal is in none of them is recorded and not answered.
-- null = every stage. Shape (validated by the API against the connection's synced pipelines):
--   [{"stageId": "…", "pipelineId": "…"?}]

alter table public.agents
  add column reply_stages jsonb
    check (reply_stages is null or (jsonb_typeof(reply_stages) = 'array' and jsonb_array_length(reply_stages) <= 100));

grant insert (reply_stages) on public.agents to authenticated;
grant update (reply_stages) on public.agents to authenticated;
