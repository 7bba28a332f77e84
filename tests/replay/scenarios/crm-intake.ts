import { randomUUID } from 'node:crypto';
import { sha256Hex } from '../../../lib/crypto.js';
import { withServiceRole } from '../../../lib/db.js';
import { createCrmSyncWorker } from '../../../workers/crm-sync-worker.js';
import { createAgentRunHandoff } from '../../../workers/run-handoff.js';
import { crmIntake, deliveriesRecordedSignal } from '../../../workflows/crm-intake.js';
import { crmIntakeWorkflowId } from '../../../workflows/crm-sync-ids.js';
import { createCrmConnection, crmSettingsFor, testCredentialStore } from '../../crm/support.js';
import { startFakeKommo, type FakeKommo } from '../../../scripts/stack/crm-fakes/kommo.js';
import { createAgent, createOrgWithMembers } from '../../support/db.js';
import { testDataConverter, testLogger, uniqueTaskQueue } from '../../support/temporal.js';
import type { ReplayScenario, ScenarioContext, ScenarioModule } from '../scenario.js';

const TOKEN = 'kommo-long-lived-intake-token';
let kommo: FakeKommo | undefined;

export async function startWorkers(ctx: ScenarioContext) {
  kommo = await startFakeKommo({ dataset: { leads: 10 }, rateLimitPerSecond: null });
  kommo.addLongLivedToken(TOKEN);
  return [
    await createCrmSyncWorker({
      connection: ctx.temporal.nativeConnection,
      namespace: ctx.temporal.namespace,
      pool: ctx.pool,
      credentials: testCredentialStore(ctx.pool, crmSettingsFor({ kommo })),
      logger: testLogger,
      taskQueue: ctx.taskQueue,
      workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
      shutdownGraceTime: '2 seconds',
      dataConverter: testDataConverter,
      // Runs and conversations are started on a queue nobody polls: the intake's history is what is recorded.
      handoff: createAgentRunHandoff({ temporal: ctx.temporal.client, taskQueue: uniqueTaskQueue('replay-intake-agents') }),
    }),
  ];
}

export async function close() {
  await kommo?.close();
}

/**
 * A Kommo connection with a stage-triggered agent and two recorded deliveries: a stage change and
 * a lead message. No agent listens to messages here: delivering one needs an agent worker to
 * accept the Update, and the intake's own history is the same either way.
 */
async function recorded(ctx: ScenarioContext) {
  const { orgId } = await createOrgWithMembers(ctx.admin, ['owner']);
  const connectionId = await createCrmConnection(ctx.admin, orgId, {
    provider: 'kommo',
    apiBaseUrl: kommo!.url,
    authKind: 'token',
    tokens: { accessToken: TOKEN, refreshToken: null, expiresAt: null },
    webhookSecretHash: sha256Hex(randomUUID()),
  });
  const status = String(kommo!.pipelines[0]!.statuses[1]!.id);
  kommo!.updateLead(1_000_002, { status_id: Number(status) });
  const stageAgent = await createAgent(ctx.admin, orgId);
  await withServiceRole(ctx.admin, async (tx) => {
    await tx.query(`update public.agents set crm_connection_id = $2, triggers = $3 where id = $1`, [stageAgent, connectionId, JSON.stringify([{ event: 'lead_stage_entered', stageId: status }])]);
    await tx.query(
      `insert into public.crm_webhook_deliveries (org_id, connection_id, dedupe_key, kind, object_type, external_id, change, payload) values
         ($1, $2, 'kommo:replay:leads:status:0', 'leads.status', 'deals', '1000002', 'upsert', '{"stageChange":true}'),
         ($1, $2, 'kommo:replay:message:add:0', 'message.add', 'deals', '1000003', 'upsert', '{"message":{"text":"Hello from the replay scenario"}}')`,
      [orgId, connectionId],
    );
  });
  return { orgId, connectionId };
}

async function drain(ctx: ScenarioContext, ids: { orgId: string; connectionId: string }) {
  const workflowId = crmIntakeWorkflowId(ids.connectionId);
  const handle = await ctx.temporal.client.workflow.signalWithStart(crmIntake, {
    taskQueue: ctx.taskQueue,
    workflowId,
    args: [{ ...ids, idleSeconds: 2 }],
    signal: deliveriesRecordedSignal,
  });
  await handle.result();
  return workflowId;
}

export const scenarios: ReplayScenario[] = [
  {
    workflowType: 'crmIntake',
    path: 'drain-then-idle',
    description: 'signal-with-start drains a stage change (starts a run) and a lead message no agent listens to, then ends idle',
    run: async (ctx) => drain(ctx, await recorded(ctx)),
  },
  {
    workflowType: 'crmIntake',
    path: 'crm-unavailable-retry',
    description: 'the CRM answers 503 with Retry-After twice; the batch is retried and then drained',
    async run(ctx) {
      const ids = await recorded(ctx);
      kommo!.injectFailure({ status: 503, body: { title: 'Service Unavailable' }, headers: { 'retry-after': '1' }, times: 2 });
      return drain(ctx, ids);
    },
  },
];

void ({ scenarios, startWorkers, close } satisfies ScenarioModule);
