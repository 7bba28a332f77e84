import http from 'node:http';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type App } from '../../api/app.js';
import { signUserToken, TEST_JWT_SECRET } from '../support/auth.js';
import { adminPool, appPool, createAgent, createOrgWithMembers, createRun, type OrgFixture } from '../support/db.js';
import { connectTestTemporal, testLogger, type TestTemporal } from '../support/temporal.js';

/**
 * Event streams end when access ends, are capped per caller and per org, live at most a while,
 * and never buffer without bound for a slow reader. Real API on a port, real Postgres
 * (LISTEN/NOTIFY); events and deltas are written the way the workers write them.
 */

const RECHECK_MS = 200;
/** "Within a few seconds": the re-check interval plus a generous margin for a loaded machine. */
const ENDS_WITHIN_MS = 4_000;

interface OpenStream {
  status: number;
  /** Durable event ids and delta texts received, in order. */
  received: string[];
  ended: Promise<void>;
  isEnded(): boolean;
  close(): void;
}

async function openStream(url: string, headers: Record<string, string>): Promise<OpenStream> {
  const abort = new AbortController();
  const response = await fetch(url, { headers, signal: abort.signal });
  const received: string[] = [];
  let done = false;
  if (response.status !== 200) {
    await response.body?.cancel();
    return { status: response.status, received, ended: Promise.resolve(), isEnded: () => true, close: () => {} };
  }
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const ended = (async () => {
    let buffer = '';
    try {
      for (;;) {
        const { done: finished, value } = await reader.read();
        if (finished) break;
        buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const id = /^id: (.*)$/m.exec(block)?.[1];
          if (id) received.push(id);
          else if (/^event: delta$/m.test(block)) received.push(`delta:${JSON.parse(/^data: (.*)$/m.exec(block)![1]!).text}`);
        }
      }
    } catch {
      // Aborted by the test, or the connection was cut.
    } finally {
      done = true;
    }
  })();
  return { status: 200, received, ended, isEnded: () => done, close: () => abort.abort() };
}

async function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('event streams end when access ends, and are bounded', () => {
  let app: App;
  let pool: pg.Pool;
  let admin: pg.Pool;
  let temporal: TestTemporal;
  let baseUrl: string;

  beforeAll(async () => {
    pool = appPool();
    admin = adminPool();
    temporal = await connectTestTemporal();
    app = await buildApp({
      pool,
      temporal: temporal.client,
      logger: testLogger,
      auth: { jwtSecret: TEST_JWT_SECRET },
      streamLimits: { maxPerUser: 2, maxPerOrg: 3, maxLifetimeMs: 60_000, accessRecheckMs: RECHECK_MS, maxBufferedBytes: 64 * 1024 },
    });
    baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
  });

  afterAll(async () => {
    await app?.close();
    await temporal?.close();
    await pool?.end();
    await admin?.end();
  });

  async function runOf(org: OrgFixture): Promise<string> {
    return createRun(admin, org.orgId, await createAgent(admin, org.orgId));
  }
  const eventsUrl = (org: OrgFixture, runId: string) => `${baseUrl}/v1/orgs/${org.orgId}/runs/${runId}/events`;
  const addEvent = (org: OrgFixture, runId: string, seq: number) =>
    admin.query(`insert into public.run_events (org_id, run_id, seq, type, payload) values ($1, $2, $3, 'test', '{}'::jsonb)`, [org.orgId, runId, seq]);
  const addDelta = (runId: string, seq: number, text: string) => admin.query(`select pg_notify('run_deltas', $1)`, [JSON.stringify({ runId, seq, text })]);
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  /** Opens a stream, proves it is live (an event arrives), ends access, and expects the stream to end and stay silent. */
  async function expectEndsWhenAccessEnds(org: OrgFixture, runId: string, headers: Record<string, string>, endAccess: () => Promise<unknown>) {
    const stream = await openStream(eventsUrl(org, runId), headers);
    expect(stream.status).toBe(200);
    await addEvent(org, runId, 1);
    await until(() => stream.received.includes('1'));

    await endAccess();
    const endedAt = Date.now();
    await within(ENDS_WITHIN_MS, stream.ended, 'the stream ending');
    expect(Date.now() - endedAt).toBeLessThan(ENDS_WITHIN_MS);
    const before = [...stream.received];
    await addDelta(runId, 2, 'after access ended').catch(() => undefined);
    await addEvent(org, runId, 2).catch(() => undefined);
    await new Promise((r) => setTimeout(r, RECHECK_MS * 2));
    expect(stream.received).toEqual(before);
  }

  it("ends a removed member's stream within seconds", async () => {
    const org = await createOrgWithMembers(admin, ['owner', 'member']);
    const runId = await runOf(org);
    const member = org.userWithRole('member');
    await expectEndsWhenAccessEnds(org, runId, bearer(await signUserToken(member)), () =>
      admin.query(`delete from public.organization_members where org_id = $1 and user_id = $2`, [org.orgId, member]),
    );
  });

  it('ends a stream opened with an API key when the key is revoked', async () => {
    const org = await createOrgWithMembers(admin, ['owner']);
    const runId = await runOf(org);
    const owner = bearer(await signUserToken(org.userWithRole('owner')));
    const created = await app.inject({ method: 'POST', url: `/v1/orgs/${org.orgId}/api-keys`, headers: owner, payload: { name: 'stream', scope: 'member' } });
    expect(created.statusCode).toBe(201);
    const { id, key } = created.json() as { id: string; key: string };
    await expectEndsWhenAccessEnds(org, runId, bearer(key), async () => {
      expect((await app.inject({ method: 'DELETE', url: `/v1/orgs/${org.orgId}/api-keys/${id}`, headers: owner })).statusCode).toBe(204);
    });
  });

  it('ends every stream of an organization when it is deleted', async () => {
    const org = await createOrgWithMembers(admin, ['owner']);
    const runId = await runOf(org);
    const owner = bearer(await signUserToken(org.userWithRole('owner')));
    await expectEndsWhenAccessEnds(org, runId, owner, () => admin.query(`delete from public.organizations where id = $1`, [org.orgId]));
  });

  it('caps concurrent streams per user and per org, and frees a slot when a stream closes', async () => {
    const org = await createOrgWithMembers(admin, ['owner', 'admin', 'member']);
    const runId = await runOf(org);
    const [owner, adminUser, member] = await Promise.all(['owner', 'admin', 'member'].map((r) => signUserToken(org.userWithRole(r as 'owner'))));
    const url = eventsUrl(org, runId);

    const ownerStreams = [await openStream(url, bearer(owner!)), await openStream(url, bearer(owner!))];
    expect(ownerStreams.map((s) => s.status)).toEqual([200, 200]);
    const third = await fetch(url, { headers: bearer(owner!) });
    expect(third.status).toBe(429);
    expect(third.headers.get('content-type')).toContain('application/problem+json');
    expect(((await third.json()) as { type: string }).type).toMatch(/rate-limited$/);

    // Another user of the org still gets one: the org has room for three.
    const adminStream = await openStream(url, bearer(adminUser!));
    expect(adminStream.status).toBe(200);
    // The org's cap is reached now, whoever asks.
    expect((await openStream(url, bearer(member!))).status).toBe(429);

    ownerStreams[0]!.close();
    await ownerStreams[0]!.ended;
    let reopened: OpenStream | undefined;
    const deadline = Date.now() + 5_000;
    while (!reopened || reopened.status !== 200) {
      if (Date.now() > deadline) throw new Error('the closed stream never gave its slot back');
      await new Promise((r) => setTimeout(r, 50));
      reopened = await openStream(url, bearer(member!));
    }
    for (const s of [ownerStreams[1]!, adminStream, reopened]) s.close();
  });

  it('ends a stream at its maximum lifetime; the client resumes with Last-Event-ID and misses nothing', async () => {
    const shortLived = await buildApp({
      pool,
      temporal: temporal.client,
      logger: testLogger,
      auth: { jwtSecret: TEST_JWT_SECRET },
      streamLimits: { maxLifetimeMs: 700, accessRecheckMs: 60_000 },
    });
    const url = await shortLived.listen({ host: '127.0.0.1', port: 0 });
    try {
      const org = await createOrgWithMembers(admin, ['owner']);
      const runId = await runOf(org);
      const headers = bearer(await signUserToken(org.userWithRole('owner')));
      const path = `${url}/v1/orgs/${org.orgId}/runs/${runId}/events`;
      await addEvent(org, runId, 1);
      const first = await openStream(path, headers);
      await within(5_000, first.ended, 'the stream reaching its lifetime');
      expect(first.received).toEqual(['1']);

      await addEvent(org, runId, 2);
      const resumed = await openStream(path, { ...headers, 'last-event-id': '1' });
      await until(() => resumed.received.length > 0);
      expect(resumed.received).toEqual(['2']);
      resumed.close();
    } finally {
      await shortLived.close();
    }
  });

  it('drops a reader that does not keep up instead of buffering for it', async () => {
    const org = await createOrgWithMembers(admin, ['owner']);
    const runId = await runOf(org);
    const token = await signUserToken(org.userWithRole('owner'));
    const { port } = new URL(baseUrl);

    // A client that reads the headers, then stops reading.
    let receivedBytes = 0;
    let isClosed = false;
    const closed = new Promise<void>((resolve) => {
      const request = http.get({ host: '127.0.0.1', port, path: `/v1/orgs/${org.orgId}/runs/${runId}/events`, headers: { authorization: `Bearer ${token}` } }, (res) => {
        expect(res.statusCode).toBe(200);
        res.pause();
        res.on('data', (chunk: Buffer) => (receivedBytes += chunk.length));
        res.on('close', () => {
          isClosed = true;
          resolve();
        });
        res.on('error', () => resolve());
        paused = res;
      });
      request.on('error', () => resolve());
    });
    let paused: http.IncomingMessage | undefined;
    await until(() => paused !== undefined);
    // Let the stream subscribe before the deltas go out.
    await new Promise((r) => setTimeout(r, 300));

    // Far more than the socket buffers can hold: 40 MB of deltas, in distinct notifications.
    const text = 'x'.repeat(7000);
    let sentBytes = 0;
    for (let batch = 0; batch < 12 && !isClosed; batch++) {
      await admin.query(
        `select pg_notify('run_deltas', json_build_object('runId', $1::text, 'seq', 1, 'text', $2::int * 1000 + i || $3::text)::text) from generate_series(1, 500) i`,
        [runId, batch, text],
      );
      sentBytes += 500 * 7030;
    }
    paused!.resume();
    await within(10_000, closed, 'the slow reader being dropped');
    expect(receivedBytes).toBeLessThan(sentBytes);
  });
});
