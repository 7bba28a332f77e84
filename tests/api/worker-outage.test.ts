import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, appPool, createAgent, createOrgWithMembers } from '../support/db.js';
import { connectTestTemporal, testLogger, uniqueTaskQueue, type TestTemporal } from '../support/temporal.js';

describe('API while no agent worker is running', () => {
  let app: App;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let temporal: TestTemporal;

  beforeAll(async () => {
    pool = appPool();
    admin = adminPool();
    temporal = await connectTestTemporal();
    // Nobody polls this queue: Updates can never be accepted.
    app = await buildApp({
      pool,
      temporal: temporal.client,
      logger: testLogger,
      auth: { jwtSecret: TEST_JWT_SECRET },
      agentRunsTaskQueue: uniqueTaskQueue('no-worker'),
      updateDeadlineMs: 1_500,
    });
  });

  afterAll(async () => {
    await app?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  it('answers a conversation message with 503 instead of hanging', async () => {
    const org = await createOrgWithMembers(admin, ['owner']);
    const agentId = await createAgent(admin, org.orgId);
    const token = await signUserToken(org.userWithRole('owner'));

    const res = await app.inject({
      method: 'POST',
      url: `/v1/orgs/${org.orgId}/agents/${agentId}/conversations/lead-42/messages`,
      headers: { authorization: `Bearer ${token}` },
      payload: { content: 'Is anyone there?' },
    });

    expect(res.statusCode).toBe(503);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ type: 'https://gpt-agent-platform.dev/problems/service-unavailable', status: 503 });
  });
});
