/** Names shared by the API (which starts ingestions) and the workers. Pure: no imports. */
export const KNOWLEDGE_TASK_QUEUE = 'knowledge';

/** One ingestion per document revision: a re-upload starts its own, and the older one writes nothing. */
export function knowledgeIngestWorkflowId(documentId: string, revision: number): string {
  return `knowledge-ingest:${documentId}:${revision}`;
}

/** How often a web page in the knowledge base may be re-fetched; the API offers these. */
export const KNOWLEDGE_REFRESH_INTERVALS = ['1h', '6h', '1d', '7d'] as const;
export type KnowledgeRefreshInterval = (typeof KNOWLEDGE_REFRESH_INTERVALS)[number];

/** One re-fetch schedule per document, and its workflows (Temporal appends the start time). */
export function knowledgeRefreshScheduleId(documentId: string): string {
  return `knowledge-refresh:${documentId}`;
}
