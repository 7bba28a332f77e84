import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A tiny stand-in for our API with one deliberate fault, to prove the load test fails when the
 * stack misbehaves: `server-error` answers some run reads with a 500, `cross-org` serves any run
 * to anyone (the tenancy bug the load test's probes exist for). It speaks only the routes the
 * load test uses, with the real paths, status codes and bodies; tokens are read, not verified.
 */
export type Fault = 'server-error' | 'cross-org';

export interface MisbehavingApi {
  url: string;
  close(): Promise<void>;
}

export async function startMisbehavingApi(fault: Fault): Promise<MisbehavingApi> {
  const orgs = new Map<string, { members: Set<string>; invites: Map<string, string> }>();
  const runs = new Map<string, { id: string; orgId: string; input: string }>();
  let reads = 0;

  const userOf = (req: http.IncomingMessage): { sub: string; email?: string } | undefined => {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const payload = token?.split('.')[1];
    return payload ? (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { sub: string; email?: string }) : undefined;
  };

  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk: Buffer) => (raw += chunk.toString('utf8')));
    req.on('end', () => {
      const send = (status: number, body?: unknown) => {
        res.writeHead(status, body === undefined ? {} : { 'content-type': status >= 400 ? 'application/problem+json' : 'application/json' });
        res.end(body === undefined ? undefined : JSON.stringify(body));
      };
      const notFound = () => send(404, { type: 'https://gpt-agent-platform.dev/problems/not-found', title: 'Not found', status: 404 });
      const user = userOf(req);
      if (!user) return send(401, { type: 'unauthenticated', status: 401 });
      const body = raw ? (JSON.parse(raw) as Record<string, string>) : {};
      const path = new URL(req.url!, 'http://x').pathname;
      const member = (orgId: string) => orgs.get(orgId)?.members.has(user.sub) ?? false;
      let m: RegExpExecArray | null;

      if (req.method === 'POST' && path === '/v1/orgs') {
        const id = randomUUID();
        orgs.set(id, { members: new Set([user.sub]), invites: new Map() });
        return send(201, { id, name: body.name });
      }
      if (req.method === 'POST' && path === '/v1/invites/accept') {
        for (const [orgId, org] of orgs) {
          if (org.invites.get(body.token!) === user.email) {
            org.members.add(user.sub);
            return send(200, { orgId, role: 'member' });
          }
        }
        return notFound();
      }
      if ((m = /^\/v1\/orgs\/([^/]+)(\/.*)?$/.exec(path))) {
        const orgId = m[1]!;
        const rest = m[2] ?? '';
        if (req.method === 'DELETE' && rest === '') {
          orgs.delete(orgId);
          return send(204);
        }
        let r: RegExpExecArray | null;
        if ((r = /^\/runs\/([^/]+)(\/events)?$/.exec(rest)) && req.method === 'GET') {
          const run = runs.get(r[1]!);
          const visible = run && (fault === 'cross-org' || (run.orgId === orgId && member(orgId)));
          if (!visible) return notFound();
          if (r[2]) {
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            res.end(`: stream of run events\n\nid: 1\nevent: created\ndata: {}\n\n`);
            return;
          }
          if (fault === 'server-error' && ++reads % 5 === 0) return send(500, { type: 'internal', status: 500 });
          return send(200, { id: run.id, status: 'queued', input: run.input });
        }
        if (!member(orgId)) return notFound();
        if (req.method === 'POST' && rest === '/invites') {
          const token = randomUUID();
          orgs.get(orgId)!.invites.set(token, body.email!);
          return send(201, { id: randomUUID(), token });
        }
        if (req.method === 'POST' && rest === '/agents') return send(201, { id: randomUUID(), name: body.name });
        if (req.method === 'POST' && /^\/agents\/[^/]+\/runs$/.test(rest)) {
          const id = randomUUID();
          runs.set(id, { id, orgId, input: body.input! });
          return send(201, { id, status: 'queued' });
        }
        if (req.method === 'GET' && rest === '/runs') {
          return send(200, { items: [...runs.values()].filter((run) => run.orgId === orgId).slice(-20), nextCursor: null });
        }
      }
      // No CRM on this server, as on a stack without ENCRYPTION_KEYS.
      return notFound();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
