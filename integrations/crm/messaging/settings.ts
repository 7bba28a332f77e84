/**
 * A connection's messaging settings (public.crm_messaging_settings): who the agent writes as on
 * HubSpot, and on Kommo the plan's monthly `send_message` quota, when to warn, and the Salesbot
 * that takes over beyond it. One zod schema is the API's input, the stored shape's check and the
 * type; the defaults are what a connection without a row gets.
 */
import { z } from 'zod';
import type { Queryable } from '../../../lib/db.js';
import type { MessagingSettings } from './types.js';

const numericId = z.string().regex(/^\d{1,20}$/, 'a numeric id');

export const messagingSettingsSchema = z.strictObject({
  /** HubSpot: the dedicated user's agent actor, `A-<userId>` (HubSpot has no bot sender). */
  hubspotSenderActorId: z.string().regex(/^A-\d{1,20}$/, 'an agent actor id, A-<userId>').nullable().default(null),
  /** Kommo: the Salesbot whose step sends `{{lead.cf.<replyFieldId>}}`, used beyond the quota or without the add-on. */
  kommoSalesbot: z.strictObject({ botId: numericId, replyFieldId: numericId }).nullable().default(null),
  /** Kommo: `send_message` calls the account's plan allows per calendar month (UTC); null counts nothing. */
  kommoMonthlyQuota: z.number().int().min(0).max(10_000_000).nullable().default(null),
  /** Raise the quota warning when this share of the quota is spent. */
  quotaWarnPercent: z.number().int().min(1).max(100).default(80),
});
export type MessagingSettingsInput = z.input<typeof messagingSettingsSchema>;
export type ConnectionMessagingSettings = z.output<typeof messagingSettingsSchema>;

export const DEFAULT_MESSAGING_SETTINGS: ConnectionMessagingSettings = messagingSettingsSchema.parse({});

interface SettingsRow {
  hubspot_sender_actor_id: string | null;
  kommo_salesbot_id: string | null;
  kommo_reply_field_id: string | null;
  kommo_monthly_quota: number | null;
  quota_warn_percent: number;
}

/** The connection's settings, or the defaults when none were set. RLS decides who may read. */
export async function loadMessagingSettings(db: Queryable, orgId: string, connectionId: string): Promise<ConnectionMessagingSettings> {
  const { rows } = await db.query<SettingsRow>(
    `select hubspot_sender_actor_id, kommo_salesbot_id, kommo_reply_field_id, kommo_monthly_quota, quota_warn_percent
       from public.crm_messaging_settings where org_id = $1 and connection_id = $2`,
    [orgId, connectionId],
  );
  const row = rows[0];
  if (!row) return DEFAULT_MESSAGING_SETTINGS;
  return {
    hubspotSenderActorId: row.hubspot_sender_actor_id,
    kommoSalesbot: row.kommo_salesbot_id && row.kommo_reply_field_id ? { botId: row.kommo_salesbot_id, replyFieldId: row.kommo_reply_field_id } : null,
    kommoMonthlyQuota: row.kommo_monthly_quota,
    quotaWarnPercent: row.quota_warn_percent,
  };
}

/** Replaces the connection's settings (admins, under RLS). */
export async function storeMessagingSettings(db: Queryable, orgId: string, connectionId: string, s: ConnectionMessagingSettings): Promise<void> {
  await db.query(
    `insert into public.crm_messaging_settings (org_id, connection_id, hubspot_sender_actor_id, kommo_salesbot_id, kommo_reply_field_id, kommo_monthly_quota, quota_warn_percent)
     values ($1, $2, $3, $4, $5, $6, $7)
     on conflict (connection_id) do update set
       hubspot_sender_actor_id = excluded.hubspot_sender_actor_id, kommo_salesbot_id = excluded.kommo_salesbot_id,
       kommo_reply_field_id = excluded.kommo_reply_field_id, kommo_monthly_quota = excluded.kommo_monthly_quota,
       quota_warn_percent = excluded.quota_warn_percent, updated_at = now()`,
    [orgId, connectionId, s.hubspotSenderActorId, s.kommoSalesbot?.botId ?? null, s.kommoSalesbot?.replyFieldId ?? null, s.kommoMonthlyQuota, s.quotaWarnPercent],
  );
}

/** What the messengers need of the settings. */
export function messengerSettings(s: ConnectionMessagingSettings): MessagingSettings {
  return { hubspotSenderActorId: s.hubspotSenderActorId, kommoSalesbot: s.kommoSalesbot };
}
