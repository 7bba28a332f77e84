// The workflow bundle's entry point: every workflow the workers run is exported here.
import { setWorkflowOptions, workflowInfo } from '@temporalio/workflow';
import { agentRun } from './agent-run/index.js';
import { crmIntake } from './crm-intake.js';
import { crmSync } from './crm-sync.js';
import { knowledgeIngest } from './knowledge-ingest.js';
import { knowledgeRefresh } from './knowledge-refresh.js';
import { orgWebhookDelivery } from './webhook-delivery.js';
import { CONVERSATION_MEMO } from './task-queues.js';

// Versioning behaviour per workflow type, used when workers run with Worker Deployment
// Versioning (workers/versioning.ts; docs/operations.md). An agent run lasts minutes to days and
// finishes on the build that started it: no replay risk, old builds drain. Conversations are
// agentRun executions that live for weeks: the API marks them with a memo, and they auto-upgrade,
// so their changes need patched(). CRM syncs and webhook intake are long-lived and
// continue-as-new: AUTO_UPGRADE, with patched() for changes (short histories, cheap replay).
// Knowledge ingestion takes minutes and finishes on the build that started it: PINNED.
// The getters run once, before the first activation: the memo is known, the behaviour is fixed.
// Unversioned workers (development, tests, compose) must declare none: the server refuses it.
// They still report a version, with a build id but no deployment name.
const versioned = (behaviour: 'PINNED' | 'AUTO_UPGRADE') => (workflowInfo().currentDeploymentVersion?.deploymentName ? { versioningBehavior: behaviour } : {});
setWorkflowOptions(() => versioned(workflowInfo().memo?.[CONVERSATION_MEMO] === true ? 'AUTO_UPGRADE' : 'PINNED'), agentRun);
setWorkflowOptions(() => versioned('AUTO_UPGRADE'), crmSync);
setWorkflowOptions(() => versioned('AUTO_UPGRADE'), crmIntake);
setWorkflowOptions(() => versioned('PINNED'), knowledgeIngest);
// A re-fetch takes minutes, like an ingestion.
setWorkflowOptions(() => versioned('PINNED'), knowledgeRefresh);
// A webhook delivery lives up to a day of timers: AUTO_UPGRADE, with patched() for changes.
setWorkflowOptions(() => versioned('AUTO_UPGRADE'), orgWebhookDelivery);

export { agentRun, crmIntake, crmSync, knowledgeIngest, knowledgeRefresh, orgWebhookDelivery };
