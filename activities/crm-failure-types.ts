/**
 * Failure types of CRM activities that must not be retried. A pure module so workflow code can
 * list them without importing activity code.
 */
export const CrmFailureTypes = {
  /** The connection is gone, not authorized, or needs a new authorization. */
  connectionUnavailable: 'CrmConnectionUnavailable',
  /** The CRM refused our credentials or scope (401/403 after a refresh). */
  auth: 'CrmAuthFailed',
  /** The CRM rejected the request itself (400/404/409/422): retrying cannot help. */
  rejected: 'CrmRequestRejected',
  /** Another sync of this connection is running. */
  alreadyRunning: 'CrmSyncAlreadyRunning',
} as const;

export const crmNonRetryableTypes: string[] = Object.values(CrmFailureTypes);
