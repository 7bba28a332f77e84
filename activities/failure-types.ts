/**
 * Failure types the workflows must not retry. A pure module (no imports) so workflow code can
 * use the values without pulling activity code into the deterministic bundle.
 */
export const NonRetryableFailureTypes = {
  runNotFound: 'RunNotFound',
  llmRejected: 'LlmRequestRejected',
  llmAuth: 'LlmAuthFailed',
} as const;
