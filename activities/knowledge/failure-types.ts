/** Failure types of knowledge ingestion that retrying cannot fix. Pure, so the workflow can list them. */
export const KnowledgeFailureTypes = {
  /** The file or page has no extractable text, is corrupt, encrypted, too large or hostile. */
  extraction: 'KnowledgeExtractionFailed',
  /** The URL is unsafe (SSRF guard) or answered 4xx. */
  source: 'KnowledgeSourceUnavailable',
  /** The embedding provider refused the key or the request. */
  embedding: 'KnowledgeEmbeddingRejected',
} as const;

export const knowledgeNonRetryableTypes: string[] = Object.values(KnowledgeFailureTypes);
