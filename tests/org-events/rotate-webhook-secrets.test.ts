import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createWebhookDeliveryActivities } from '../../activities/org-events/deliver.js';
import { encryptSecret, generateKeySpec, parseKeyring } from '../../lib/crypto.js';
import { WEBHOOK_SECRET_COLUMN } from '../../lib/org-events.js';
import { createGuardedFetch } from '../../lib/ssrf.js';
import { generateWebhookSecret } from '../../lib/standard-webhooks.js';
import { startWebhookReceiver, type WebhookReceiver } from '../fakes/webhook-receiver.js';
import { adminPool, appPool, createOrgWithMembers } from '../support/db.js';
import { requireEnv } from '../support/temporal.js';

/**
 * `npm run rotate-keys` (the operator command, run as a process) covers org webhook endpoints'
 * signing secrets: a secret written under the old key is re-encrypted under the new one, and the
 * delivery activity signs with it holding the new key alone.
 */
const root = fileURLToPath(new URL('../..', import.meta.url));
const admin = adminPool();
const pool = appPool();
const oldSpec = generateKeySpec('hooks-old');
const oldOnly = parseKeyring(oldSpec);
const newSpec = generateKeySpec('hooks-new');
const newOnly = parseKeyring(newSpec);
let receiver: WebhookReceiver;
let fetch: ReturnType<typeof createGuardedFetch>;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  fetch = createGuardedFetch({ allowedHosts: [new URL(receiver.url).host] });
});

afterAll(async () => {
  await fetch?.close();
  await receiver?.close();
  await pool.end();
  await admin.end();
});

/** An endpoint stored as the API stores it: the secret encrypted with `keyring`, AAD bound to the row. */
async function endpoint(orgId: string, secret: string, keyring = oldOnly) {
  const id = randomUUID();
  await admin.query(`insert into public.webhook_endpoints (id, org_id, url, secret) values ($1, $2, $3, $4)`, [
    id,
    orgId,
    receiver.url,
    encryptSecret(keyring, secret, { orgId, rowId: id, column: WEBHOOK_SECRET_COLUMN }),
  ]);
  return id;
}

/** `npm run rotate-keys -- --org <orgId>` with `keyring` in ENCRYPTION_KEYS; its exit code and output. */
function rotateKeys(orgId: string, keys: string, activeKeyId: string): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/rotate-keys.ts', '--org', orgId], {
      cwd: root,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_MIGRATION_URL: requireEnv('TEST_DATABASE_ADMIN_URL'), ENCRYPTION_KEYS: keys, ENCRYPTION_ACTIVE_KEY_ID: activeKeyId },
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('exit', (status) => resolve({ status, out }));
  });
}

const storedSecret = async (id: string) => (await admin.query<{ secret: string }>(`select secret from public.webhook_endpoints where id = $1`, [id])).rows[0]!.secret;

it('rotate-keys re-encrypts webhook endpoint secrets under the active key; deliveries are signed with them holding only the new key', async () => {
  const { orgId } = await createOrgWithMembers(admin, ['owner']);
  const secret = generateWebhookSecret();
  const rotated = [await endpoint(orgId, secret), await endpoint(orgId, generateWebhookSecret())];
  // A secret under a key the keyring does not hold: reported by endpoint, left as it is.
  const lost = await endpoint(orgId, generateWebhookSecret(), parseKeyring(generateKeySpec('hooks-lost')));
  // Another org's endpoint stays out of a rotation scoped to this org.
  const other = await createOrgWithMembers(admin, ['owner']);
  const outside = await endpoint(other.orgId, generateWebhookSecret());

  const run = await rotateKeys(orgId, `${oldSpec},${newSpec}`, 'hooks-new');

  // Exit 1: the lost row is still there, and the operator is told which one.
  expect(run.status, run.out).toBe(1);
  expect(run.out).toContain('Re-encrypted 2 webhook endpoint secret(s) under key hooks-new; 1 remaining.');
  expect(run.out).toContain(`Could not decrypt the secret of webhook endpoint ${lost} (org ${orgId}): key hooks-lost is not in the keyring`);
  expect(run.out).not.toContain(secret);
  for (const id of rotated) expect(await storedSecret(id)).toMatch(/^v1\.hooks-new\./);
  expect(await storedSecret(lost)).toMatch(/^v1\.hooks-lost\./);
  expect(await storedSecret(outside)).toMatch(/^v1\.hooks-old\./);

  // An event for the first endpoint, delivered by the activity the webhook workflow runs.
  const eventId = randomUUID();
  await admin.query(`insert into public.org_events (id, org_id, seq, type, payload) values ($1, $2, 1, 'run.failed', '{"runId":"r-1"}')`, [eventId, orgId]);
  const { rows } = await admin.query<{ id: string }>(`insert into public.webhook_deliveries (org_id, endpoint_id, event_id) values ($1, $2, $3) returning id`, [orgId, rotated[0], eventId]);
  const attempt = { orgId, deliveryId: rows[0]!.id, attempt: 1, retryInSeconds: null, giveUpAt: new Date(Date.now() + 60_000).toISOString() };

  // The old key alone no longer opens the row: nothing references it any more.
  await expect(createWebhookDeliveryActivities({ pool, keyring: oldOnly, fetch }).attemptWebhookDelivery(attempt)).rejects.toThrow(/hooks-new/);
  expect(receiver.received).toHaveLength(0);

  receiver.secret = secret;
  const outcome = await createWebhookDeliveryActivities({ pool, keyring: newOnly, fetch }).attemptWebhookDelivery(attempt);
  expect(outcome).toEqual({ outcome: 'delivered' });
  expect(receiver.received).toHaveLength(1);
  expect(receiver.received[0]!.verified).toBe(true);
  expect(receiver.received[0]!.headers['webhook-id']).toBe(eventId);
});
