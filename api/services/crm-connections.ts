import { createConnectionOps } from './crm/connections.js';
import { createDeliveryOps } from './crm/deliveries.js';
import { createMessagingOps } from './crm/messaging.js';
import { createOAuthOps } from './crm/oauth.js';
import { createRecordOps } from './crm/records.js';
import { createCrmContext, type CrmServiceDeps } from './crm/shared.js';
import { createSyncOps } from './crm/syncs.js';

export type { CreateConnectionInput, CreatedConnection } from './crm/connections.js';
export type { WebhookDeliveryView } from './crm/deliveries.js';
export { OAUTH_STATE_TTL_MINUTES } from './crm/oauth.js';
export type { RecordView } from './crm/records.js';
export { scheduleInputSchema, type ConnectionView, type CrmServiceDeps, type ScheduleInput } from './crm/shared.js';
export type { SyncRunView } from './crm/syncs.js';

/** The CRM service: each job lives in its own file under ./crm/, sharing one context. */
export function createCrmService(deps: CrmServiceDeps) {
  const ctx = createCrmContext(deps);
  const { create, list, get, rename, remove, test } = createConnectionOps(ctx);
  const { completeOAuth } = createOAuthOps(ctx);
  const { putSchedule, startSync, listSyncs } = createSyncOps(ctx);
  const { listWebhookDeliveries } = createDeliveryOps(ctx);
  const { listRecords } = createRecordOps(ctx);
  const { getMessagingSettings, putMessagingSettings } = createMessagingOps(ctx);
  return { create, completeOAuth, list, get, rename, remove, test, putSchedule, startSync, listSyncs, listWebhookDeliveries, listRecords, getMessagingSettings, putMessagingSettings };
}

export type CrmService = ReturnType<typeof createCrmService>;
