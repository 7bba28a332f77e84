-- Operator tooling writes chunks as service_role too (the RLS matrix inserts one); the generated
-- embedding_sketch column evaluates private.embedding_sketch with the inserting role's rights,
-- and 20261209300100 granted it to authenticated only.
grant execute on function private.embedding_sketch(real[]) to service_role;
