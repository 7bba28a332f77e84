/** Timeouts and retry policies of the activities knowledgeIngest and knowledgeRefresh call, one set for both. */
import type { ActivityOptions } from '@temporalio/workflow';
import { knowledgeNonRetryableTypes } from '../activities/knowledge/failure-types.js';

// Getting the text: extraction parses one file in a capped thread (integrations/documents/extract.ts),
// fetching a page may meet a slow server. Three attempts: a file that failed twice will fail
// again, and a page that is down now is fetched again at the next scheduled refresh.
export const sourceTextOptions: ActivityOptions = {
  startToCloseTimeout: '3 minutes',
  heartbeatTimeout: '90 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: knowledgeNonRetryableTypes },
};

// Indexing embeds in batches (heartbeating each) and writes all chunks in one transaction.
export const indexingOptions: ActivityOptions = {
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 8, nonRetryableErrorTypes: knowledgeNonRetryableTypes },
};

// Recording a failure is one short write; it retries until Postgres is back (a deploy, a failover).
export const bookkeepingOptions: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 30 },
};
