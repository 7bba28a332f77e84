import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
// ajv (and ajv-formats) come with Fastify; the fuzzer uses them to hold answers to the document.
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedOrg, startFullTestApp, type FullTestApp, type InventoryRoute, type SeededOrg } from '../support/full-app.js';

/**
 * Property-based fuzzing of every route. Inputs are derived from the route's own schemas as
 * published in /openapi.json (which is generated from the zod schemas), mixed with real ids of
 * the caller's org, ids of another org and arbitrary JSON. For every input: no 5xx, the answer's
 * status is declared and its body matches the declared schema, and nothing of the other org
 * shows up. Runs are bounded and seeded: FUZZ_SEED=<n> replays a failure, FUZZ_RUNS widens it.
 */
const SEED = Number(process.env.FUZZ_SEED ?? 20261126);
const RUNS = Number(process.env.FUZZ_RUNS ?? 25);

const inventory = (JSON.parse(readFileSync(new URL('../../api/route-inventory.json', import.meta.url), 'utf8')) as { routes: InventoryRoute[] }).routes;
const fuzzed = inventory.filter((r) => r.auth !== 'public-docs');
const key = (r: InventoryRoute) => `${r.method} ${r.path}`;
const NEEDS_AGENT_WORKER = new Set(['POST /v1/orgs/:orgId/agents/:agentId/conversations/:threadKey/messages']);

type JsonSchema = {
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  maxItems?: number;
  format?: string;
  pattern?: string;
  default?: unknown;
};
type Operation = {
  parameters?: Array<{ in: string; name: string; required?: boolean; schema: JsonSchema }>;
  requestBody?: { content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, { content?: Record<string, { schema: JsonSchema }> }>;
};

/** A fast-check arbitrary for the JSON Schema shapes our zod schemas produce. */
function arbitraryFor(schema: JsonSchema, ids: fc.Arbitrary<string>): fc.Arbitrary<unknown> {
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives) return fc.oneof(...alternatives.map((s) => arbitraryFor(s, ids)));
  if (schema.allOf?.[0]) return arbitraryFor(schema.allOf[0], ids);
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum) return fc.constantFrom(...schema.enum);
  if (Array.isArray(schema.type)) return fc.oneof(...schema.type.map((t) => arbitraryFor({ ...schema, type: t }, ids)));
  switch (schema.type) {
    case 'null':
      return fc.constant(null);
    case 'boolean':
      return fc.boolean();
    case 'integer': {
      const min = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : -1_000_000);
      return fc.integer({ min, max: Math.max(min, Math.min(schema.maximum ?? 1_000_000, 1_000_000_000)) });
    }
    case 'number':
      return fc.double({ min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6, noNaN: true, noDefaultInfinity: true });
    case 'string': {
      if (schema.format === 'uuid') return ids;
      if (schema.format === 'email') return fc.emailAddress();
      if (schema.format === 'date') return fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString().slice(0, 10));
      if (schema.format === 'date-time') return fc.date({ noInvalidDate: true }).map((d) => d.toISOString());
      if (schema.format === 'uri') return fc.webUrl();
      if (schema.pattern) return fc.stringMatching(new RegExp(schema.pattern)).filter((s) => s.length >= (schema.minLength ?? 0) && s.length <= (schema.maxLength ?? 200));
      const minLength = schema.minLength ?? 0;
      return fc.string({ minLength, maxLength: Math.max(minLength, Math.min(schema.maxLength ?? 40, 40)), unit: 'grapheme' });
    }
    case 'array':
      return fc.array(schema.items ? arbitraryFor(schema.items, ids) : fc.jsonValue(), { maxLength: Math.min(schema.maxItems ?? 4, 4) });
    case 'object': {
      const props = schema.properties ?? {};
      const record = fc.record(
        Object.fromEntries(Object.entries(props).map(([k, s]) => [k, arbitraryFor(s, ids)])),
        { requiredKeys: (schema.required ?? []).filter((k) => k in props) },
      );
      return record;
    }
    default:
      return fc.jsonValue();
  }
}

/** Mostly well-formed input, sometimes anything at all, sometimes with an extra field. */
function fuzzed_(schema: JsonSchema, ids: fc.Arbitrary<string>): fc.Arbitrary<unknown> {
  const shaped = arbitraryFor(schema, ids);
  return fc.oneof(
    { arbitrary: shaped, weight: 6 },
    { arbitrary: fc.jsonValue({ maxDepth: 3 }), weight: 1 },
    { arbitrary: fc.tuple(shaped, fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 1 })).map(([v, k, x]) => (v && typeof v === 'object' && !Array.isArray(v) ? { ...v, [k || 'x']: x } : v)), weight: 1 },
  );
}

describe('fuzzing every route (fast-check, arbitraries from the route schemas)', () => {
  let full: FullTestApp;
  let a: SeededOrg;
  let b: SeededOrg;
  let spec: { paths: Record<string, Record<string, Operation>> };
  const ajv = new Ajv2020({ strict: false, allErrors: false });
  (addFormatsModule as unknown as (ajv: Ajv2020) => void)(ajv);

  beforeAll(async () => {
    full = await startFullTestApp();
    [a, b] = await Promise.all([seedOrg(full, 'fuzz-a'), seedOrg(full, 'fuzz-b')]);
    spec = (await full.app.inject({ method: 'GET', url: '/openapi.json' })).json();
  });
  afterAll(async () => {
    await full?.close();
  });

  const foreign = () => [b.orgId, ...Object.values(b.ids), b.ownerId, b.adminId, b.memberId, ...b.secrets].filter((s) => s.length > 8);

  // Writes first and deletes last, so the org and its resources live through most runs.
  const ordered = [...fuzzed].sort((x, y) => Number(x.method === 'DELETE') - Number(y.method === 'DELETE') || Number(x.path === '/v1/orgs/:orgId') - Number(y.path === '/v1/orgs/:orgId'));

  for (const route of ordered) {
    it(`${key(route)}: no 5xx, declared answers only, no foreign data`, async () => {
      const statuses = new Map<number, number>();
      const op = spec.paths[route.path.replace(/:([A-Za-z]+)/g, '{$1}')]![route.method.toLowerCase()]!;
      const ownIds = [a.orgId, ...Object.values(a.ids).filter((v) => /^[0-9a-f-]{36}$/.test(v)), a.memberId, a.ownerId];
      const ids = fc.oneof(
        { arbitrary: fc.constantFrom(...ownIds), weight: 4 },
        { arbitrary: fc.constantFrom(b.orgId, b.ids.agentId, b.ids.runId, b.ids.connectionId, b.ids.documentId), weight: 1 },
        { arbitrary: fc.uuid(), weight: 1 },
      );
      const params = (op.parameters ?? []).filter((p) => p.in === 'path');
      const query = (op.parameters ?? []).filter((p) => p.in === 'query');
      const pathArb = fc.record(
        Object.fromEntries(
          params.map((p) => {
            // The event stream stays open on success: fuzz it only where it must refuse.
            if (route.stream && p.name === 'runId') return [p.name, fc.oneof(fc.uuid(), fc.constant(b.ids.runId))];
            // The org-wide feed has no other id: only orgs the caller does not belong to.
            if (route.stream && p.name === 'orgId' && params.length === 1) return [p.name, fc.oneof(fc.uuid(), fc.constant(b.orgId), fc.string({ maxLength: 40 }))];
            // No agent worker runs here, so a valid message would wait the full Update deadline
            // for one (then 503, see tests/api/worker-outage.test.ts): fuzz the refusal paths.
            if (NEEDS_AGENT_WORKER.has(key(route)) && p.name === 'agentId') return [p.name, fc.oneof(fc.uuid(), fc.constant(b.ids.agentId))];
            if (p.name === 'orgId') return [p.name, fc.oneof({ arbitrary: fc.constant(a.orgId), weight: 5 }, { arbitrary: fc.constant(b.orgId), weight: 1 }, { arbitrary: fc.string({ maxLength: 40 }), weight: 1 })];
            const own = (a.ids as Record<string, string>)[p.name];
            const theirs = (b.ids as Record<string, string>)[p.name];
            return [
              p.name,
              fc.oneof(
                ...(own && theirs ? [{ arbitrary: fc.constant(own), weight: 6 }, { arbitrary: fc.constant(theirs), weight: 1 }] : []),
                { arbitrary: arbitraryFor(p.schema, ids), weight: 2 },
                { arbitrary: fc.string({ minLength: 1, maxLength: 40 }), weight: 1 },
              ),
            ];
          }),
        ),
      );
      const queryArb = fc.record(
        Object.fromEntries(
          query.map((p) => {
            const value = fc.oneof({ arbitrary: arbitraryFor(p.schema, ids), weight: 6 }, { arbitrary: fc.string({ maxLength: 30 }), weight: 1 });
            // Optional parameters are mostly left out, so most runs get past validation.
            return [p.name, p.required ? value : fc.oneof({ arbitrary: fc.constant(undefined), weight: 3 }, { arbitrary: value, weight: 1 })];
          }),
        ),
      ).map((q) => Object.fromEntries(Object.entries(q).filter(([, v]) => v !== undefined)));
      const bodySchema = op.requestBody?.content['application/json']?.schema;
      const bodyArb = bodySchema ? fuzzed_(bodySchema, ids) : fc.constant(undefined);

      await fc.assert(
        fc.asyncProperty(pathArb, queryArb, bodyArb, async (pathValues, queryValues, body) => {
          const path = route.path.replace(/:([A-Za-z]+)/g, (_, n: string) => encodeURIComponent(String((pathValues as Record<string, unknown>)[n] ?? randomUUID())) || 'x');
          const qs = new URLSearchParams(Object.entries(queryValues as Record<string, unknown>).map(([k, v]): [string, string] => [k, String(v)])).toString();
          const url = qs ? `${path}?${qs}` : path;
          const payload = route.auth === 'webhook-signature' ? JSON.stringify(body ?? {}) : body !== undefined ? JSON.stringify(body) : undefined;
          const res = await full.app.inject({
            method: route.method,
            url,
            headers: {
              ...(route.auth === 'bearer' ? { authorization: `Bearer ${a.owner}` } : {}),
              ...(payload !== undefined ? { 'content-type': 'application/json' } : {}),
            },
            ...(payload !== undefined ? { payload } : {}),
          });
          statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          const where = `${route.method} ${url} -> ${res.statusCode} ${res.body.slice(0, 300)}`;
          expect(res.statusCode, where).toBeLessThan(500);
          const declared = op.responses[String(res.statusCode)];
          expect(declared, `undeclared status: ${where}`).toBeDefined();
          const schema = declared!.content?.['application/json']?.schema;
          if (schema && res.body.length > 0) {
            const validate = ajv.compile(schema);
            expect(validate(res.json()), `${where}: ${ajv.errorsText(validate.errors)}`).toBe(true);
          }
          const leaked = foreign().filter((s) => res.body.includes(s) && !decodeURIComponent(url).includes(s) && !JSON.stringify(body ?? null).includes(s));
          expect(leaked, where).toEqual([]);
        }),
        { numRuns: RUNS, seed: SEED, endOnFailure: true },
      );
      // The runs reached the route, not only the validator (the seed mixes in the org's real ids).
      expect([...statuses.values()].reduce((x, y) => x + y, 0)).toBe(RUNS);
      if (process.env.FUZZ_VERBOSE) console.log(key(route), Object.fromEntries(statuses));
    }, 120_000);
  }
});
