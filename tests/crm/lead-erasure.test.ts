import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leadThreadKey } from '../../lib/agent-triggers.js';
import { createRun } from '../support/db.js';
import { seedOrg, startFullTestApp, type FullTestApp, type SeededOrg } from '../support/full-app.js';

/**
 * A lead's memory through the API (members read it), and erasing everything held about a lead
 * (admins, one call, audit-logged): its conversations with their messages and events, its
 * memory, its synced record, the webhook deliveries that carried its messages; nothing of
 * another lead, nothing of another org.
 */
describe('lead memory and erasure API', () => {
  let full: FullTestApp;
  let admin: pg.Pool;
  let a: SeededOrg;
  let b: SeededOrg;

  beforeAll(async () => {
    full = await startFullTestApp();
    admin = full.admin;
    [a, b] = await Promise.all([seedOrg(full, 'a'), seedOrg(full, 'b')]);
  });
  afterAll(async () => {
    await full?.close();
  });

  const as = (token: string) => ({ authorization: `Bearer ${token}` });
  const leadUrl = (org: SeededOrg, leadId: string, connectionId = org.ids.connectionId) => `/v1/orgs/${org.orgId}/crm/connections/${connectionId}/leads/${encodeURIComponent(leadId)}`;

  /** Everything a lead leaves behind, as the intake and the workers write it. */
  async function seedLead(org: SeededOrg, leadId: string, status: 'completed' | 'sleeping' = 'completed') {
    const { orgId } = org;
    const connectionId = org.ids.connectionId;
    const runId = await createRun(admin, orgId, org.ids.agentId, { input: '' });
    await admin.query(`update public.agent_runs set thread_key = $2, status = $3 where id = $1`, [runId, leadThreadKey(connectionId, leadId), status]);
    await admin.query(`insert into public.conversation_messages (org_id, run_id, author, content) values ($1, $2, $3, 'My phone is +1 555 0100')`, [orgId, runId, randomUUID()]);
    await admin.query(`insert into public.run_events (org_id, run_id, seq, type, payload) values ($1, $2, 1, 'user.message', '{"content":"My phone is +1 555 0100"}')`, [orgId, runId]);
    await admin.query(`insert into public.lead_memories (org_id, connection_id, lead_external_id, summary, source_run_id) values ($1, $2, $3, 'Phone +1 555 0100, wants a call.', $4)`, [orgId, connectionId, leadId, runId]);
    await admin.query(`insert into public.crm_records (org_id, connection_id, object_type, external_id, name) values ($1, $2, 'deals', $3, 'Deal of the lead')`, [orgId, connectionId, leadId]);
    await admin.query(
      `insert into public.crm_webhook_deliveries (org_id, connection_id, dedupe_key, kind, object_type, external_id, change, payload) values ($1, $2, $3, 'message', 'deals', $4, 'upsert', '{"message":{"text":"My phone is +1 555 0100"}}')`,
      [orgId, connectionId, `erase-${randomUUID()}`, leadId],
    );
    await admin.query(`insert into public.org_events (id, org_id, seq, type, payload) values (gen_random_uuid(), $1, (select coalesce(max(seq), 0) + 1 from public.org_events where org_id = $1), 'reply.failed', $2)`, [orgId, { runId }]);
    return runId;
  }

  async function heldAbout(org: SeededOrg, leadId: string) {
    const key = leadThreadKey(org.ids.connectionId, leadId);
    const { rows } = await admin.query(
      `select (select count(*) from public.agent_runs where org_id = $1 and thread_key = $2)::int as runs,
              (select count(*) from public.conversation_messages m join public.agent_runs r on r.id = m.run_id where r.org_id = $1 and r.thread_key = $2)::int as messages,
              (select count(*) from public.lead_memories where org_id = $1 and thread_key = $2)::int as memories,
              (select count(*) from public.crm_records where org_id = $1 and connection_id = $3 and external_id = $4)::int as records,
              (select count(*) from public.crm_webhook_deliveries where org_id = $1 and connection_id = $3 and external_id = $4)::int as deliveries`,
      [org.orgId, key, org.ids.connectionId, leadId],
    );
    return rows[0];
  }

  it("members read a lead's memory, newest first; another org's lead answers 404", async () => {
    const res = await full.app.inject({ method: 'GET', url: `${leadUrl(a, a.ids.leadId)}/memory`, headers: as(a.memberToken) });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().items).toEqual([{ id: expect.any(String), summary: expect.stringMatching(/^Memory of a-/), agentId: a.ids.agentId, sourceRunId: expect.any(String), createdAt: expect.any(String) }]);
    // B's owner: A's org in the path, or B's org with A's connection.
    expect((await full.app.inject({ method: 'GET', url: `${leadUrl(a, a.ids.leadId)}/memory`, headers: as(b.owner) })).statusCode).toBe(404);
    const crossed = await full.app.inject({ method: 'GET', url: `${leadUrl(b, a.ids.leadId, a.ids.connectionId)}/memory`, headers: as(b.owner) });
    expect(crossed.statusCode).toBe(404);
    expect(crossed.body).not.toContain('Memory of');
    // A lead nobody talked to has an empty memory.
    expect((await full.app.inject({ method: 'GET', url: `${leadUrl(a, 'never-seen')}/memory`, headers: as(a.memberToken) })).json()).toEqual({ items: [] });
  });

  it('an admin erases everything held about a lead in one call, audit-logged, and nothing else', async () => {
    const runId = await seedLead(a, 'lead-erase');
    await seedLead(a, 'lead-keep');
    expect(await heldAbout(a, 'lead-erase')).toEqual({ runs: 1, messages: 1, memories: 1, records: 1, deliveries: 1 });

    expect((await full.app.inject({ method: 'DELETE', url: leadUrl(a, 'lead-erase'), headers: as(a.memberToken) })).statusCode).toBe(403);
    expect((await full.app.inject({ method: 'DELETE', url: leadUrl(a, 'lead-erase'), headers: as(b.owner) })).statusCode).toBe(404);
    expect((await full.app.inject({ method: 'DELETE', url: leadUrl(b, 'lead-erase', a.ids.connectionId), headers: as(b.owner) })).statusCode).toBe(404);
    expect(await heldAbout(a, 'lead-erase')).toEqual({ runs: 1, messages: 1, memories: 1, records: 1, deliveries: 1 });

    const res = await full.app.inject({ method: 'DELETE', url: leadUrl(a, 'lead-erase'), headers: as(a.adminToken) });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ erased: { conversations: 1, messages: 1, memories: 1, records: 1, webhookDeliveries: 1, triggerFirings: 0, orgEvents: 1 } });
    expect(await heldAbout(a, 'lead-erase')).toEqual({ runs: 0, messages: 0, memories: 0, records: 0, deliveries: 0 });
    expect((await admin.query(`select 1 from public.run_events where run_id = $1`, [runId])).rowCount).toBe(0);
    expect(await heldAbout(a, 'lead-keep')).toEqual({ runs: 1, messages: 1, memories: 1, records: 1, deliveries: 1 });

    const audit = await admin.query(`select action, actor_type, actor_id, target_type, target_id, metadata from public.audit_log where org_id = $1 and action = 'lead.erased'`, [a.orgId]);
    expect(audit.rows).toEqual([
      { action: 'lead.erased', actor_type: 'user', actor_id: a.adminId, target_type: 'crm_lead', target_id: `${a.ids.connectionId}:lead-erase`, metadata: res.json().erased },
    ]);
    // Erasing again finds nothing left, and says so.
    const again = await full.app.inject({ method: 'DELETE', url: leadUrl(a, 'lead-erase'), headers: as(a.adminToken) });
    expect(again.json().erased).toMatchObject({ conversations: 0, messages: 0, memories: 0, records: 0 });
  });

  it('refuses while a conversation with the lead is open (409), and keeps everything', async () => {
    await seedLead(a, 'lead-open', 'sleeping');
    const res = await full.app.inject({ method: 'DELETE', url: leadUrl(a, 'lead-open'), headers: as(a.adminToken) });
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ type: 'https://gpt-agent-platform.dev/problems/conflict', detail: expect.stringMatching(/still open/) });
    expect(await heldAbout(a, 'lead-open')).toEqual({ runs: 1, messages: 1, memories: 1, records: 1, deliveries: 1 });
  });
});
