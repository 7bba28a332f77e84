import { hubspotTokenRequest } from '../../../integrations/crm/hubspot.js';
import { kommoTokenRequest } from '../../../integrations/crm/kommo.js';
import { createCrmSyncWorker } from '../../../workers/crm-sync-worker.js';
import { crmSyncWorkflowId } from '../../../workflows/crm-sync-ids.js';
import { createCrmConnection, crmSettingsFor, testCredentialStore } from '../../crm/support.js';
import { startFakeHubspot, type FakeHubspot } from '../../fakes/hubspot-server.js';
import { startFakeKommo, type FakeKommo } from '../../../scripts/stack/crm-fakes/kommo.js';
import { createOrgWithMembers } from '../../support/db.js';
import { testDataConverter, testLogger } from '../../support/temporal.js';
import type { ReplayScenario, ScenarioContext, ScenarioModule } from '../scenario.js';

let kommo: FakeKommo | undefined;
let hubspot: FakeHubspot | undefined;

export async function startWorkers(ctx: ScenarioContext) {
  kommo = await startFakeKommo({ dataset: { leads: 30, contacts: 10, companies: 5 }, rateLimitPerSecond: null });
  hubspot = await startFakeHubspot({ dataset: { deals: 20, contacts: 10 }, rateLimit: null });
  const credentials = testCredentialStore(ctx.pool, crmSettingsFor({ kommo, hubspot }));
  return [
    await createCrmSyncWorker({
      connection: ctx.temporal.nativeConnection,
      namespace: ctx.temporal.namespace,
      pool: ctx.pool,
      credentials,
      logger: testLogger,
      taskQueue: ctx.taskQueue,
      workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
      shutdownGraceTime: '2 seconds',
      pageSize: 10,
      // One page per activity, as when these histories were recorded (the continue-as-new scenario needs it).
      pagesPerActivity: 1,
      dataConverter: testDataConverter,
    }),
  ];
}

export async function close() {
  await kommo?.close();
  await hubspot?.close();
}

async function connect(ctx: ScenarioContext, provider: 'kommo' | 'hubspot') {
  const settings = crmSettingsFor({ kommo: kommo!, hubspot: hubspot! });
  const { orgId } = await createOrgWithMembers(ctx.admin, ['owner']);
  const tokens =
    provider === 'kommo'
      ? await kommoTokenRequest({ baseUrl: kommo!.url, app: settings.kommo.app! }, { kind: 'authorization_code', code: kommo!.authorize() })
      : await hubspotTokenRequest({ baseUrl: hubspot!.url, app: settings.hubspot.app! }, { kind: 'authorization_code', code: hubspot!.authorize() });
  const connectionId = await createCrmConnection(ctx.admin, orgId, { provider, apiBaseUrl: provider === 'kommo' ? kommo!.url : hubspot!.url, tokens });
  return { orgId, connectionId };
}

async function sync(ctx: ScenarioContext, ids: { orgId: string; connectionId: string }, mode: 'incremental' | 'full', extra: { continueAsNewAfterPages?: number } = {}) {
  const workflowId = crmSyncWorkflowId(ids.connectionId);
  const handle = await ctx.temporal.client.workflow.start('crmSync', {
    taskQueue: ctx.taskQueue,
    workflowId,
    args: [{ ...ids, mode, trigger: 'manual', ...extra }],
  });
  await handle.result().catch(() => undefined);
  return workflowId;
}

export const scenarios: ReplayScenario[] = [
  {
    workflowType: 'crmSync',
    path: 'incremental',
    description: 'first incremental sync of a Kommo connection, several pages per object type',
    run: async (ctx) => sync(ctx, await connect(ctx, 'kommo'), 'incremental'),
  },
  {
    workflowType: 'crmSync',
    path: 'full',
    description: 'full resync of a HubSpot connection (reads everything, tombstones the unseen)',
    run: async (ctx) => sync(ctx, await connect(ctx, 'hubspot'), 'full'),
  },
  {
    workflowType: 'crmSync',
    path: 'continue-as-new',
    description: 'a sync that continues as new after 2 pages (history of the first execution)',
    async run(ctx) {
      const ids = await connect(ctx, 'kommo');
      const workflowId = await sync(ctx, ids, 'incremental', { continueAsNewAfterPages: 2 });
      // The interesting history is the first execution, the one that continued as new.
      for (let attempt = 0; attempt < 50; attempt++) {
        for await (const execution of ctx.temporal.client.workflow.list({ query: `WorkflowId = "${workflowId}" AND ExecutionStatus = "ContinuedAsNew"` })) {
          return { workflowId, runId: execution.runId };
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`${workflowId} never continued as new`);
    },
  },
];

void ({ scenarios, startWorkers, close } satisfies ScenarioModule);
