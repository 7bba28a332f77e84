-- The team's rules, part 2: the response delay. The agent waits this many seconds after the
-- lead's last message before answering, so a burst of messages gets one reply that reads all of
-- them (each new message restarts the wait). 0 answers at once. The wait is a durable timer in
-- the conversation workflow.

alter table public.agents
  add column response_delay_seconds int not null default 0 check (response_delay_seconds between 0 and 3600);

grant insert (response_delay_seconds) on public.agents to authenticated;
grant update (response_delay_seconds) on public.agents to authenticated;
