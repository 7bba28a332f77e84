/**
 * A worker in its own process for the CRM crash tests, which SIGKILL it mid-work:
 * CRM_CRASH_MODE=agent runs the agent-runs worker with the CRM tools and CRM replies, =sync the crm-sync worker,
 * =intake the crm-sync worker with webhook intake, which SIGKILLs itself right after its first
 * hand-over to Temporal succeeded (a run started or a message accepted), before the activity
 * could mark the delivery processed: the worst moment for a duplicate.
 * Reads TEST_* like the tests, plus CRM_CRASH_TASK_QUEUE, CRM_TEST_KEY_SPEC (the parent's key),
 * CRM_CRASH_LLM_URL (agent) and CRM_CRASH_PAGE_SIZE (sync).
 */
import { createToolRegistry } from '../../activities/tools/builtin.js';
import { createCrmTools } from '../../activities/tools/crm-tools.js';
import { createCrmSyncWorker } from '../../workers/crm-sync-worker.js';
import { createAgentRunHandoff } from '../../workers/run-handoff.js';
import type { AgentRunHandoff } from '../../activities/crm-intake.js';
import { appPool } from '../support/db.js';
import { connectTestTemporal, createTestAgentWorker, testDataConverter, testLogger } from '../support/temporal.js';
import { crmSettingsFor, testCredentialStore } from './support.js';

const temporal = await connectTestTemporal();
const pool = appPool({ max: 6 });
const credentials = testCredentialStore(pool, crmSettingsFor({}));
const taskQueue = process.env.CRM_CRASH_TASK_QUEUE!;
const mode = process.env.CRM_CRASH_MODE;
const handoff = (): AgentRunHandoff => {
  const real = createAgentRunHandoff({ temporal: temporal.client, taskQueue: process.env.CRM_CRASH_AGENT_TASK_QUEUE! });
  const die = () => process.kill(process.pid, 'SIGKILL');
  return {
    startRun: async (run) => {
      await real.startRun(run);
      die();
    },
    deliverMessage: async (run, messageId) => {
      const outcome = await real.deliverMessage(run, messageId);
      die();
      return outcome;
    },
    requestHandoff: async (run, request) => {
      await real.requestHandoff(run, request);
      die();
    },
  };
};
const worker =
  mode === 'sync' || mode === 'intake'
    ? await createCrmSyncWorker({
        connection: temporal.nativeConnection,
        namespace: temporal.namespace,
        pool,
        credentials,
        logger: testLogger,
        taskQueue,
        workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
        dataConverter: testDataConverter,
        pageSize: Number(process.env.CRM_CRASH_PAGE_SIZE ?? 250),
        ...(mode === 'intake' ? { handoff: handoff() } : {}),
      })
    : await createTestAgentWorker({
        temporal,
        pool,
        llmBaseUrl: process.env.CRM_CRASH_LLM_URL!,
        taskQueue,
        tools: createToolRegistry(createCrmTools({ credentials })),
        // Answers of CRM conversations go into the lead's thread (the reply crash test kills it there).
        credentials,
      });
process.stdout.write('crm-crash-worker ready\n');
await worker.run();
