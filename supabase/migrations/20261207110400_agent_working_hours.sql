-- The team's rules, part 5: working hours. A weekly schedule in the agent's IANA time zone; a
-- lead's message outside it is answered when the hours open (a durable timer in the
-- conversation workflow), unless `outsideHours` is `answer`. null = always open. Shape
-- (validated by the API): {"timeZone": "Europe/Madrid", "outsideHours": "defer" | "answer",
--  "intervals": [{"day": "mon", "start": "09:00", "end": "18:00"}, …]}

alter table public.agents
  add column working_hours jsonb check (working_hours is null or jsonb_typeof(working_hours) = 'object');

grant insert (working_hours) on public.agents to authenticated;
grant update (working_hours) on public.agents to authenticated;
