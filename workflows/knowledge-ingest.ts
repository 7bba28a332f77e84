import { ActivityFailure, ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { IndexOutcome, KnowledgeActivities, KnowledgeIngestRef } from '../activities/knowledge/ingest.js';
import { bookkeepingOptions, indexingOptions, sourceTextOptions } from './knowledge-activity-options.js';

export type KnowledgeIngestInput = KnowledgeIngestRef;
export type KnowledgeIngestResult = IndexOutcome | { status: 'failed' };

const extraction = proxyActivities<KnowledgeActivities>(sourceTextOptions);
const indexing = proxyActivities<KnowledgeActivities>(indexingOptions);
const bookkeeping = proxyActivities<KnowledgeActivities>(bookkeepingOptions);

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
