/**
 * Failure types the workflows must not retry. A pure module (no imports) so workflow code can
 * use the values without pulling activity code into the deterministic bundle.
 */
export const NonRetryableFailureTypes = {
  runNotFound: 'RunNotFound',
  llmRejected: 'LlmRequestRejected',
  llmAuth: 'LlmAuthFailed',
  /** The org's own provider (not the deployment's) refused the org's key: the org must fix it. */
  llmKeyRejected: 'LlmKeyRejected',
  runBudgetExceeded: 'RunBudgetExceeded',
  orgQuotaExceeded: 'OrgDailyQuotaExceeded',
} as const;

/** Failure types the agent run itself raises (the run's `error.type`). */
export const RunFailureTypes = {
  stepLimitReached: 'StepLimitReached',
} as const;
