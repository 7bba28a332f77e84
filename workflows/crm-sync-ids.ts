/** Names shared by the API (which starts and schedules syncs) and the workers. Pure: no imports. */
export const CRM_SYNC_TASK_QUEUE = 'crm-sync';

/** At most one sync workflow per connection: the workflow id is the connection's business key. */
export function crmSyncWorkflowId(connectionId: string): string {
  return `crm-sync:${connectionId}`;
}

export function crmSyncScheduleId(connectionId: string): string {
  return `crm-sync-schedule:${connectionId}`;
}
