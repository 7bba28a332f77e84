import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFullTestApp, type FullTestApp } from '../support/full-app.js';

/** The dev dependency's own entry point: a missing install fails the test instead of skipping the lint. */
const REDOCLY = fileURLToPath(new URL('../../node_modules/@redocly/cli/bin/cli.js', import.meta.url));

type Operation = { operationId?: string; summary?: string; responses: Record<string, unknown> };
type Spec = { openapi: string; servers?: Array<{ url: string }>; paths: Record<string, Record<string, Operation>>; components: { securitySchemes: Record<string, unknown> } };

describe('OpenAPI document', () => {
  let full: FullTestApp;
  let served: string;
  let spec: Spec;

  beforeAll(async () => {
    // Every optional part on (CRM routes included), so every operation is checked.
    full = await startFullTestApp();
    const res = await full.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    served = res.body;
    spec = res.json();
  });

  afterAll(async () => {
    await full?.close();
  });

  it('is served at /openapi.json as OpenAPI 3.1, generated from the route schemas', () => {
    expect(spec.openapi).toBe('3.1.0');
    const startRun = spec.paths['/v1/orgs/{orgId}/agents/{agentId}/runs']!.post as Operation & {
      parameters: Array<{ name: string; in: string }>;
      requestBody: { content: Record<string, { schema: { required: string[]; additionalProperties: boolean } }> };
    };
    expect(startRun.parameters.map((p) => `${p.in}:${p.name}`)).toEqual(expect.arrayContaining(['path:orgId', 'path:agentId', 'header:idempotency-key']));
    const body = startRun.requestBody.content['application/json']!.schema;
    expect(body.required).toEqual(['input']);
    // Write schemas reject unknown fields, and the document says so.
    expect(body.additionalProperties).toBe(false);
    expect(Object.keys(startRun.responses)).toEqual(expect.arrayContaining(['200', '201', '400', '404', '409']));
    expect(spec.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('names every operation with a unique camelCase operationId and a summary, and declares servers', () => {
    const operations = Object.entries(spec.paths).flatMap(([p, ops]) => Object.entries(ops).map(([method, op]) => ({ where: `${method.toUpperCase()} ${p}`, op })));
    expect(operations.length).toBeGreaterThan(50);
    for (const { where, op } of operations) {
      expect(op.operationId, where).toMatch(/^[a-z][A-Za-z0-9]*$/);
      expect(op.summary, where).toEqual(expect.any(String));
    }
    expect(new Set(operations.map((o) => o.op.operationId)).size).toBe(operations.length);
    // Stable names the console and any generated SDK call by.
    expect(spec.paths['/v1/orgs/{orgId}/runs']!.get!.operationId).toBe('listRuns');
    expect(spec.paths['/v1/orgs/{orgId}/agents']!.post!.operationId).toBe('createAgent');
    expect(spec.servers).toEqual([{ url: '/', description: expect.any(String) }]);
    // Event streams say what their 200 is.
    expect(spec.paths['/v1/orgs/{orgId}/runs/{runId}/events']!.get!.responses['200']).toMatchObject({ content: { 'text/event-stream': {} } });
  });

  it('passes redocly lint with its recommended rules: no errors and no warnings', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'openapi-lint-'));
    try {
      const file = path.join(dir, 'openapi.json');
      await writeFile(file, served);
      const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [REDOCLY, 'lint', file, '--extends=recommended', '--format=json'],
          // No telemetry or update check: the test machine has no network, and a lint needs none.
          { cwd: dir, env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' }, maxBuffer: 64 * 1024 * 1024 },
          (error, out, err) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout: out, stderr: err }),
        );
      });
      expect(stdout, `redocly did not run (${code}): ${stderr.slice(0, 2000)}`).toMatch(/^\s*\{/);
      const report = JSON.parse(stdout) as { totals: { errors: number; warnings: number }; problems: Array<{ ruleId: string; message: string; location: Array<{ pointer: string }> }> };
      const problems = report.problems.map((p) => `${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`);
      expect(problems).toEqual([]);
      expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
      expect(code).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('has a browsable UI at /docs', async () => {
    const res = await full.app.inject({ method: 'GET', url: '/docs/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/html');
    expect(res.body).toContain('swagger');
  });
});
