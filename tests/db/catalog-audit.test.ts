import { afterAll, describe, expect, it } from 'vitest';
import { ORG_EVENT_TYPES } from '../../lib/org-events.js';
import { runStatusSchema } from '../../lib/run-status.js';
import { adminPool } from '../support/db.js';

// Each query lists violations straight from the catalog, so a table, view, function or role
// added by a later migration is audited without touching this file. Every one must be empty.

const admin = adminPool({ max: 2 });
afterAll(() => admin.end());

async function violations(sql: string): Promise<Record<string, unknown>[]> {
  const { rows } = await admin.query<Record<string, unknown>>(sql);
  return rows;
}

describe('catalog audit', () => {
  it('finds the core tables, so the audit is not vacuous', async () => {
    const rows = await violations(`
      select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind in ('r', 'p') order by 1`);
    expect(rows.map((r) => r.relname)).toEqual(
      expect.arrayContaining(['agent_runs', 'agents', 'api_keys', 'audit_log', 'invites', 'organization_members', 'organizations', 'run_events', 'crm_connections', 'crm_records']),
    );
  });

  it("agent_runs.status accepts exactly the run statuses of lib/run-status.ts", async () => {
    const [row] = await violations(`
      select pg_get_constraintdef(oid) as def from pg_constraint where conname = 'agent_runs_status_check'`);
    const allowed = [...String(row?.def).matchAll(/'([a-z_]+)'::text/g)].map((m) => m[1]).sort();
    expect(allowed).toEqual([...runStatusSchema.options].sort());
  });

  it('org_events.type accepts exactly the event types of lib/org-events.ts', async () => {
    const [row] = await violations(`
      select pg_get_constraintdef(oid) as def from pg_constraint where conname = 'org_events_type_check'`);
    const allowed = [...String(row?.def).matchAll(/'([a-z_.]+)'::text/g)].map((m) => m[1]).sort();
    expect(allowed).toEqual([...ORG_EVENT_TYPES].sort());
  });

  it('every table in public has row-level security enabled and forced, and at least one policy', async () => {
    expect(
      await violations(`
        select c.relname, c.relrowsecurity as enabled, c.relforcerowsecurity as forced,
               (select count(*) from pg_policy p where p.polrelid = c.oid) as policies
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind in ('r', 'p')
          and (not c.relrowsecurity or not c.relforcerowsecurity
               or not exists (select 1 from pg_policy p where p.polrelid = c.oid))`),
    ).toEqual([]);
  });

  it('no policy applies to PUBLIC (which includes anon)', async () => {
    expect(
      await violations(`
        select c.relname, p.polname
        from pg_policy p join pg_class c on c.oid = p.polrelid join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and 0 = any (p.polroles)`),
    ).toEqual([]);
  });

  it('every view in public runs with the invoker rights, and there are no materialized views (they cannot have RLS)', async () => {
    expect(
      await violations(`
        select c.relname, c.relkind, c.reloptions
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public'
          and (c.relkind = 'm'
               or (c.relkind = 'v' and not coalesce('security_invoker=true' = any (c.reloptions), false)))`),
    ).toEqual([]);
  });

  it('no security definer function lives in public', async () => {
    expect(
      await violations(`
        select p.oid::regprocedure::text as function
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'public' and p.prosecdef`),
    ).toEqual([]);
  });

  it('every security definer function pins its search_path', async () => {
    expect(
      await violations(`
        select p.oid::regprocedure::text as function, p.proconfig
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where p.prosecdef
          and n.nspname not in ('pg_catalog', 'information_schema')
          and not exists (select 1 from unnest(p.proconfig) setting where setting like 'search_path=%')`),
    ).toEqual([]);
  });

  it('only service_role and superusers bypass row-level security', async () => {
    expect(
      await violations(`
        select rolname from pg_roles
        where rolbypassrls and not rolsuper and rolname <> 'service_role'`),
    ).toEqual([]);
  });

  it('the application login role can switch only to anon and authenticated, never to a bypassrls role', async () => {
    expect(
      await violations(`
        select r.rolname from pg_roles r
        where pg_has_role('authenticator', r.oid, 'member') and r.rolname <> 'authenticator'
          and r.rolname not in ('anon', 'authenticated')`),
    ).toEqual([]);
  });

  it('anon holds no privilege on any table, view or sequence in public', async () => {
    expect(
      await violations(`
        select c.relname, c.relkind
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public'
          and (
            (c.relkind in ('r', 'p', 'v', 'm', 'f')
             and (has_table_privilege('anon', c.oid, 'select, insert, update, delete, truncate, references, trigger')
                  or has_any_column_privilege('anon', c.oid, 'select, insert, update, references')))
            or (c.relkind = 'S' and has_sequence_privilege('anon', c.oid, 'usage, select, update'))
          )`),
    ).toEqual([]);
  });

  it('the private schema and its functions are closed to anon and PUBLIC', async () => {
    expect(
      await violations(`
        select 'schema private' as object where has_schema_privilege('anon', 'private', 'usage')
        union all
        select p.oid::regprocedure::text
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'private'
          and (has_function_privilege('anon', p.oid, 'execute')
               or exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                          where a.grantee = 0 and a.privilege_type = 'EXECUTE'))`),
    ).toEqual([]);
  });

  it('every org_id column in public leads an index, so policy filters never scan a whole table', async () => {
    expect(
      await violations(`
        select c.relname
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind in ('r', 'p') and a.attname = 'org_id' and not a.attisdropped
          and not exists (select 1 from pg_index i where i.indrelid = c.oid and i.indkey[0] = a.attnum)`),
    ).toEqual([]);
  });
});
