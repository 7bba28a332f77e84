import { ActivityFailure, ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { IndexOutcome, KnowledgeActivities, KnowledgeIngestRef } from '../activities/knowledge/ingest.js';
import { knowledgeNonRetryableTypes } from '../activities/knowledge/failure-types.js';

export type KnowledgeIngestInput = KnowledgeIngestRef;
export type KnowledgeIngestResult = IndexOutcome | { status: 'failed' };

// Extraction parses one file in a capped thread (integrations/documents/extract.ts); fetching a
// page may meet a slow server. Three attempts: a file that failed twice will fail again.
const extraction = proxyActivities<KnowledgeActivities>({
  startToCloseTimeout: '3 minutes',
  heartbeatTimeout: '90 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: knowledgeNonRetryableTypes },
});

// Indexing embeds in batches (heartbeating each) and writes all chunks in one transaction.
const indexing = proxyActivities<KnowledgeActivities>({
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 8, nonRetryableErrorTypes: knowledgeNonRetryableTypes },
});

const bookkeeping = proxyActivities<KnowledgeActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 30 },
});

/**
 * Ingests one revision of a knowledge document: text out of the file or page, then chunks with
 * languages (and embeddings where the org has a model) replacing the old ones in one
 * transaction, status `ready`; or status `failed` with the reason. Workflow id
 * `knowledge-ingest:<documentId>:<revision>`; a newer revision makes this one a no-op.
 */
export async function knowledgeIngest(input: KnowledgeIngestInput): Promise<KnowledgeIngestResult> {
  const ref: KnowledgeIngestRef = { orgId: input.orgId, documentId: input.documentId, revision: input.revision };
  try {
    const extracted = await extraction.extractKnowledgeText(ref);
    if (extracted.status === 'stale') return extracted;
    return await indexing.indexKnowledgeDocument(ref);
  } catch (err) {
    await bookkeeping.failKnowledgeDocument({ ...ref, reason: failureReason(err, 'Ingestion failed.') });
    return { status: 'failed' };
  }
}

/** The message a person reads for a failed activity: the activity's own, not Temporal's wrapper. */
export function failureReason(err: unknown, fallback: string): string {
  const cause = err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause : err;
  return (cause instanceof Error ? cause.message : String(cause)) || fallback;
}
