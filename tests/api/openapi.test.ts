import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { TEST_JWT_SECRET } from '../support/auth.js';
import { appPool } from '../support/db.js';
import { connectTestTemporal, testLogger, type TestTemporal } from '../support/temporal.js';

describe('OpenAPI document', () => {
  let app: App;
  let pool: pg.Pool;
  let temporal: TestTemporal;

  beforeAll(async () => {
    pool = appPool();
    temporal = await connectTestTemporal();
    app = await buildApp({ pool, temporal: temporal.client, logger: testLogger, auth: { jwtSecret: TEST_JWT_SECRET } });
    await app.ready();
  });

  afterAll(async () => {
    await app?.close();
    await temporal?.close();
    await pool?.end();
  });

  it('is served at /openapi.json as OpenAPI 3.1, generated from the route schemas', async () => {
    const res = await app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const spec = res.json();
    expect(spec.openapi).toBe('3.1.0');
    const startRun = spec.paths['/v1/orgs/{orgId}/agents/{agentId}/runs'].post;
    expect(startRun.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`)).toEqual(
      expect.arrayContaining(['path:orgId', 'path:agentId', 'header:idempotency-key']),
    );
    const body = startRun.requestBody.content['application/json'].schema;
    expect(body.required).toEqual(['input']);
    // Write schemas reject unknown fields, and the document says so.
    expect(body.additionalProperties).toBe(false);
    expect(Object.keys(startRun.responses)).toEqual(expect.arrayContaining(['200', '201', '400', '404', '409']));
    expect(spec.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('has a browsable UI at /docs', async () => {
    const res = await app.inject({ method: 'GET', url: '/docs/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/html');
    expect(res.body).toContain('swagger');
  });
});
