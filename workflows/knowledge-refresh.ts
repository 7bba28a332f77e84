import { proxyActivities } from '@temporalio/workflow';
import type { KnowledgeActivities } from '../activities/knowledge/ingest.js';
import type { KnowledgeRefreshActivities, KnowledgeRefreshRef } from '../activities/knowledge/refresh.js';
import { bookkeepingOptions, indexingOptions, sourceTextOptions } from './knowledge-activity-options.js';
import { failureReason } from './knowledge-ingest.js';

export type KnowledgeRefreshInput = KnowledgeRefreshRef;
export type KnowledgeRefreshResult =
  | { outcome: 'changed'; revision: number; chunks: number }
  | { outcome: 'unchanged'; notModified: boolean }
  | { outcome: 'skipped'; reason: string }
  | { outcome: 'failed'; reason: string };

type Activities = KnowledgeActivities & KnowledgeRefreshActivities;

const fetching = proxyActivities<Activities>(sourceTextOptions);
const indexing = proxyActivities<Activities>(indexingOptions);
const bookkeeping = proxyActivities<Activities>(bookkeepingOptions);

/**
 * One scheduled re-fetch of a web page in the knowledge base (schedule
 * `knowledge-refresh:<documentId>`, overlap SKIP). Unchanged pages (304 or the same text) end
 * here with no embedding work; a changed page becomes a new revision indexed like an upload,
 * whose chunks replace the old ones at once. Failures keep the old chunks and are recorded on
 * the document. The arguments are ids only.
 */
export async function knowledgeRefresh(input: KnowledgeRefreshInput): Promise<KnowledgeRefreshResult> {
  const ref: KnowledgeRefreshRef = { orgId: input.orgId, documentId: input.documentId };
  let fetched;
  try {
    fetched = await fetching.refetchKnowledgeUrl(ref);
  } catch (err) {
    const reason = failureReason(err, 'The page could not be fetched.');
    await bookkeeping.recordKnowledgeRefreshFailure({ ...ref, reason });
    return { outcome: 'failed', reason };
  }
  if (fetched.status === 'skipped') return { outcome: 'skipped', reason: fetched.reason };
  if (fetched.status === 'unchanged') return { outcome: 'unchanged', notModified: fetched.notModified };
  const revision = fetched.revision;
  try {
    const indexed = await indexing.indexKnowledgeDocument({ ...ref, revision });
    return indexed.status === 'ready' ? { outcome: 'changed', revision, chunks: indexed.chunks } : { outcome: 'skipped', reason: 'busy' };
  } catch (err) {
    const reason = failureReason(err, 'Indexing the changed page failed.');
    await bookkeeping.failKnowledgeDocument({ ...ref, revision, reason });
    await bookkeeping.recordKnowledgeRefreshFailure({ ...ref, reason });
    return { outcome: 'failed', reason };
  }
}
