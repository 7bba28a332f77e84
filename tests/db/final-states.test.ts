import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { autocommitAsPrincipal } from '../../lib/db.js';
import { newConnection } from './rls-expectations.js';
import { adminPool, appPool, createAgent, createOrgWithMembers, createRun } from '../support/db.js';

// Issue 12, item 8: whatever path writes it (a second workflow execution, an operator's
// script), a finished run, sync or ingest keeps its outcome. The database refuses the change.
const admin = adminPool();
const app = appPool();

afterAll(async () => {
  await app.end();
  await admin.end();
});

async function refusal(run: () => Promise<unknown>): Promise<{ code?: string; constraint?: string } | undefined> {
  try {
    await run();
    return undefined;
  } catch (err) {
    const { code, constraint } = err as { code?: string; constraint?: string };
    return { code, constraint };
  }
}

describe('final states never change', () => {
  it.each(['completed', 'failed', 'cancelled'])('a %s agent run keeps its status, error and output, even for the org worker', async (final) => {
    const { orgId } = await createOrgWithMembers(admin);
    const runId = await createRun(admin, orgId, await createAgent(admin, orgId));
    await admin.query(`update public.agent_runs set status = $2, output = 'kept', completed_at = now() where id = $1`, [runId, final]);

    const worker = { kind: 'worker' as const, orgId };
    for (const change of [`status = 'running'`, `status = 'failed', error = '{"type":"x","message":"y"}'`, `output = 'rewritten'`]) {
      if (change === `status = 'failed', error = '{"type":"x","message":"y"}'` && final === 'failed') continue;
      expect(await refusal(() => autocommitAsPrincipal(app, worker, `update public.agent_runs set ${change} where id = $1`, [runId]))).toEqual({
        code: '23514',
        constraint: 'agent_runs_final_state',
      });
    }
    // Operators too: the service role bypasses RLS, not this rule.
    expect(await refusal(() => admin.query(`update public.agent_runs set status = 'queued' where id = $1`, [runId]))).toMatchObject({ code: '23514' });
    // Metering may still settle on a finished run.
    await autocommitAsPrincipal(app, worker, `update public.agent_runs set input_tokens = input_tokens + 1 where id = $1`, [runId]);
    const { rows } = await admin.query(`select status, output, input_tokens from public.agent_runs where id = $1`, [runId]);
    expect(rows[0]).toEqual({ status: final, output: 'kept', input_tokens: 1 });
  });

  it('a live run still moves between its statuses and finishes once', async () => {
    const { orgId } = await createOrgWithMembers(admin);
    const runId = await createRun(admin, orgId, await createAgent(admin, orgId));
    for (const next of ['running', 'sleeping', 'running', 'completed']) {
      await admin.query(`update public.agent_runs set status = $2 where id = $1`, [runId, next]);
    }
    expect((await admin.query(`select status from public.agent_runs where id = $1`, [runId])).rows[0]).toEqual({ status: 'completed' });
  });

  it('a finished CRM sync keeps its outcome', async () => {
    const { orgId } = await createOrgWithMembers(admin);
    const connectionId = await newConnection(admin, orgId);
    const syncId = randomUUID();
    await admin.query(
      `insert into public.crm_sync_runs (id, org_id, connection_id, mode, status, workflow_id, finished_at) values ($1, $2, $3, 'full', 'completed', 'crm-sync:x', now())`,
      [syncId, orgId, connectionId],
    );
    const worker = { kind: 'worker' as const, orgId };
    expect(
      await refusal(() => autocommitAsPrincipal(app, worker, `update public.crm_sync_runs set status = 'failed', error = '{"type":"abandoned"}' where id = $1`, [syncId])),
    ).toEqual({ code: '23514', constraint: 'crm_sync_runs_final_state' });
    // Progress counters are not the outcome.
    await autocommitAsPrincipal(app, worker, `update public.crm_sync_runs set pages = pages + 1 where id = $1`, [syncId]);
  });

  it("a knowledge document's revision keeps its ingest outcome; a new revision starts over", async () => {
    const { orgId } = await createOrgWithMembers(admin);
    const { rows } = await admin.query<{ id: string }>(
      `insert into public.knowledge_documents (org_id, title, body, status) values ($1, 'doc', 'b', 'ready') returning id`,
      [orgId],
    );
    const documentId = rows[0]!.id;
    const worker = { kind: 'worker' as const, orgId };
    expect(
      await refusal(() => autocommitAsPrincipal(app, worker, `update public.knowledge_documents set status = 'failed' where id = $1`, [documentId])),
    ).toEqual({ code: '23514', constraint: 'knowledge_documents_final_state' });
    await admin.query(`update public.knowledge_documents set revision = revision + 1, status = 'pending' where id = $1`, [documentId]);
    expect((await admin.query(`select status, revision from public.knowledge_documents where id = $1`, [documentId])).rows[0]).toEqual({ status: 'pending', revision: 2 });
  });
});
