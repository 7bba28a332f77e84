import { withPrincipal } from '../../../lib/db.js';
import type { Principal } from '../../../lib/principal.js';
import { loadMessagingSettings, storeMessagingSettings, type ConnectionMessagingSettings } from '../../../integrations/crm/messaging/settings.js';
import { ProblemError } from '../../problems.js';
import { requireOrgRole } from '../org-access.js';
import type { CrmContext } from './shared.js';

// Settings that only mean something on one provider: set on the other, they are a mistake to name.
const kommoOnly = ['kommoSalesbot', 'kommoMonthlyQuota'] as const;
const hubspotOnly = ['hubspotSenderActorId'] as const;

/** How replies reach the connection's lead threads (admins read and write; docs/crm.md "Replies"). */
export function createMessagingOps(ctx: CrmContext) {
  const { pool, getRow } = ctx;

  async function getMessagingSettings(principal: Principal, orgId: string, connectionId: string): Promise<ConnectionMessagingSettings> {
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      await getRow(tx, orgId, connectionId);
      return loadMessagingSettings(tx, orgId, connectionId);
    });
  }

  async function putMessagingSettings(principal: Principal, orgId: string, connectionId: string, input: ConnectionMessagingSettings): Promise<ConnectionMessagingSettings> {
    return withPrincipal(pool, principal, async (tx) => {
      await requireOrgRole(tx, orgId, 'admin');
      const connection = await getRow(tx, orgId, connectionId);
      const foreign = connection.provider === 'kommo' ? hubspotOnly : kommoOnly;
      const misplaced = foreign.filter((field) => input[field] !== null);
      if (misplaced.length > 0) {
        throw new ProblemError(
          'validation-error',
          `${misplaced.join(', ')} ${misplaced.length === 1 ? 'does' : 'do'} not apply to a ${connection.provider} connection.`,
          misplaced.map((field) => ({ path: `body.${field}`, message: `only for ${connection.provider === 'kommo' ? 'HubSpot' : 'Kommo'} connections` })),
        );
      }
      await storeMessagingSettings(tx, orgId, connectionId, input);
      return loadMessagingSettings(tx, orgId, connectionId);
    });
  }

  return { getMessagingSettings, putMessagingSettings };
}
