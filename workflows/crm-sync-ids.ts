/** Names shared by the API (which starts and schedules syncs) and the workers. Pure: no imports. */
export const CRM_SYNC_TASK_QUEUE = 'crm-sync';

/** At most one sync workflow per connection: the workflow id is the connection's business key. */
export function crmSyncWorkflowId(connectionId: string): string {
  return `crm-sync:${connectionId}`;
}

export function crmSyncScheduleId(connectionId: string): string {
  return `crm-sync-schedule:${connectionId}`;
}

/**
 * One intake workflow per connection drains its recorded webhook deliveries in order; the API
 * wakes it with signal-with-start, so a burst of deliveries is one workflow, not one per event.
 */
export function crmIntakeWorkflowId(connectionId: string): string {
  return `crm-intake:${connectionId}`;
}
