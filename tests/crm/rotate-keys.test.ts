import { afterAll, expect, it } from 'vitest';
import { CredentialStore } from '../../integrations/crm/credentials.js';
import { rotateCredentialKeys } from '../../integrations/crm/rotate-keys.js';
import { encryptSecret, generateKeySpec, parseKeyring } from '../../lib/crypto.js';
import { withServiceRole } from '../../lib/db.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { createCrmConnection, crmSettingsFor, testKeyring } from './support.js';

const admin = adminPool();
const pool = appPool();
afterAll(async () => {
  await pool.end();
  await admin.end();
});

const tokens = { accessToken: 'access-token-value', refreshToken: 'refresh-token-value', expiresAt: new Date(Date.now() + 3_600_000) };

// The test database is shared with every other test file, whose credentials this process cannot
// decrypt (each file has its own random key): the rotation is scoped to this test's orgs, so it
// neither touches nor depends on their rows.
it('rotate-keys re-encrypts every credential under the active key, reports rows it cannot decrypt and goes on', async () => {
  const { orgId } = await createOrgWithMembers(admin, ['owner']);
  const other = await createOrgWithMembers(admin, ['owner']);
  const good = [
    await createCrmConnection(admin, orgId, { provider: 'hubspot', apiBaseUrl: 'http://127.0.0.1:9', tokens }),
    await createCrmConnection(admin, orgId, { provider: 'hubspot', apiBaseUrl: 'http://127.0.0.1:9', tokens }),
    await createCrmConnection(admin, orgId, { provider: 'hubspot', apiBaseUrl: 'http://127.0.0.1:9', tokens }),
  ];
  // Three rows that cannot be decrypted: a fixture that is no envelope at all, one under a key
  // the keyring does not hold, and one copied from another row (its AAD names the other row).
  const fixture = await createCrmConnection(admin, orgId, { provider: 'hubspot', apiBaseUrl: 'http://127.0.0.1:9', tokens });
  const unknownKey = await createCrmConnection(admin, orgId, { provider: 'hubspot', apiBaseUrl: 'http://127.0.0.1:9', tokens });
  const copied = await createCrmConnection(admin, orgId, { provider: 'hubspot', apiBaseUrl: 'http://127.0.0.1:9', tokens });
  const stranger = parseKeyring(generateKeySpec('lost-key'));
  await withServiceRole(admin, async (tx) => {
    await tx.query(`update public.crm_credentials set access_token = 'v1.fixture' where connection_id = $1`, [fixture]);
    await tx.query(`update public.crm_credentials set access_token = $2 where connection_id = $1`, [
      unknownKey,
      encryptSecret(stranger, 'x', { orgId, rowId: unknownKey, column: 'crm_credentials.access_token' }),
    ]);
    await tx.query(`update public.crm_credentials set access_token = (select access_token from public.crm_credentials where connection_id = $2) where connection_id = $1`, [copied, good[0]]);
  });
  // Another org's row stays out of a scoped rotation.
  const outside = await createCrmConnection(admin, other.orgId, { provider: 'hubspot', apiBaseUrl: 'http://127.0.0.1:9', tokens });

  const [oldSpec] = [...testKeyring.keys.entries()].map(([kid, key]) => `${kid}:${key.toString('base64')}`);
  const rotatedKeyring = parseKeyring(`${oldSpec},${generateKeySpec('rotated2')}`, 'rotated2');
  const result = await rotateCredentialKeys(admin, rotatedKeyring, { batchSize: 2, orgIds: [orgId] });

  expect(result.rotated).toBe(3);
  expect(result.failed.map((f) => f.connectionId).sort()).toEqual([fixture, unknownKey, copied].sort());
  expect(result.failed.every((f) => f.orgId === orgId && f.column === 'access_token' && !f.reason.includes('access-token-value'))).toBe(true);
  expect(result.remaining).toBe(3);

  const { rows } = await admin.query<{ connection_id: string; access_token: string; refresh_token: string }>(
    `select connection_id, access_token, refresh_token from public.crm_credentials where connection_id = any($1)`,
    [[...good, fixture, outside]],
  );
  const byId = Object.fromEntries(rows.map((r) => [r.connection_id, r]));
  for (const id of good) {
    expect(byId[id]?.access_token).toMatch(/^v1\.rotated2\./);
    expect(byId[id]?.refresh_token).toMatch(/^v1\.rotated2\./);
  }
  expect(byId[fixture]?.access_token).toBe('v1.fixture');
  expect(byId[outside]?.access_token).toMatch(/^v1\.test1\./);

  // Only the new key is needed from now on for the rotated rows.
  const onlyNew = parseKeyring([...rotatedKeyring.keys.entries()].filter(([kid]) => kid === 'rotated2').map(([kid, key]) => `${kid}:${key.toString('base64')}`).join(','));
  const store = new CredentialStore({ pool, keyring: onlyNew, settings: crmSettingsFor({}) });
  const info = { orgId, connectionId: good[2]!, provider: 'hubspot' as const, authKind: 'oauth' as const, status: 'active' as const, apiBaseUrl: 'http://127.0.0.1:9' };
  const current = await store.refresh(info, -1);
  expect(current.accessToken).toBe('access-token-value');
});
