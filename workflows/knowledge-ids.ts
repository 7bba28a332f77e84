/** Names shared by the API (which starts ingestions) and the workers. Pure: no imports. */
export const KNOWLEDGE_TASK_QUEUE = 'knowledge';

/** One ingestion per document revision: a re-upload starts its own, and the older one writes nothing. */
export function knowledgeIngestWorkflowId(documentId: string, revision: number): string {
  return `knowledge-ingest:${documentId}:${revision}`;
}
