/** The console routes in the URL fragment, so the API serves one page at / and nothing else. */
export type Route =
  | { name: 'home' }
  | { name: 'signin' }
  | { name: 'invite'; token: string }
  | { name: 'new-org' }
  | { name: 'agents'; orgId: string }
  | { name: 'agent'; orgId: string; agentId: string }
  | { name: 'new-agent'; orgId: string }
  | { name: 'runs'; orgId: string; agentId?: string; status?: string }
  | { name: 'run'; orgId: string; runId: string }
  | { name: 'approvals'; orgId: string }
  | { name: 'conversations'; orgId: string; agentId?: string; status?: string }
  | { name: 'conversation'; orgId: string; runId: string }
  | { name: 'webhooks'; orgId: string }
  | { name: 'crm'; orgId: string }
  | { name: 'members'; orgId: string }
  | { name: 'api-keys'; orgId: string }
  | { name: 'knowledge'; orgId: string }
  | { name: 'usage'; orgId: string }
  | { name: 'settings'; orgId: string }
  | { name: 'not-found'; path: string };

export const ORG_SECTIONS = ['agents', 'runs', 'approvals', 'conversations', 'crm', 'knowledge', 'members', 'api-keys', 'webhooks', 'usage', 'settings'] as const;
export type OrgSection = (typeof ORG_SECTIONS)[number];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#/, '') || '/';
  const [pathPart = '/', queryPart = ''] = raw.split('?');
  const query = new URLSearchParams(queryPart);
  const parts = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { name: 'home' };
  if (parts[0] === 'signin' && parts.length === 1) return { name: 'signin' };
  if (parts[0] === 'invite' && parts.length === 2) return { name: 'invite', token: parts[1]! };
  if (parts[0] === 'orgs' && parts[1] === 'new' && parts.length === 2) return { name: 'new-org' };
  if (parts[0] === 'orgs' && parts[1] && UUID.test(parts[1])) {
    const orgId = parts[1].toLowerCase();
    const [section = 'agents', id, extra] = parts.slice(2);
    if (extra !== undefined) return { name: 'not-found', path: pathPart };
    if (section === 'agents' && id === 'new') return { name: 'new-agent', orgId };
    if (section === 'agents' && id && UUID.test(id)) return { name: 'agent', orgId, agentId: id };
    if (section === 'runs' && id && UUID.test(id)) return { name: 'run', orgId, runId: id };
    if (section === 'conversations' && id && UUID.test(id)) return { name: 'conversation', orgId, runId: id.toLowerCase() };
    if ((section === 'runs' || section === 'conversations') && !id) {
      const agentId = query.get('agentId');
      const status = query.get('status');
      return { name: section, orgId, ...(agentId ? { agentId } : {}), ...(status ? { status } : {}) };
    }
    if (!id && (ORG_SECTIONS as readonly string[]).includes(section)) return { name: section as Exclude<OrgSection, 'runs' | 'conversations'>, orgId };
  }
  return { name: 'not-found', path: pathPart };
}

export function href(route: Route): string {
  switch (route.name) {
    case 'home':
      return '#/';
    case 'signin':
      return '#/signin';
    case 'invite':
      return `#/invite/${encodeURIComponent(route.token)}`;
    case 'new-org':
      return '#/orgs/new';
    case 'new-agent':
      return `#/orgs/${route.orgId}/agents/new`;
    case 'agent':
      return `#/orgs/${route.orgId}/agents/${route.agentId}`;
    case 'run':
      return `#/orgs/${route.orgId}/runs/${route.runId}`;
    case 'conversation':
      return `#/orgs/${route.orgId}/conversations/${route.runId}`;
    case 'runs':
    case 'conversations': {
      const q = new URLSearchParams();
      if (route.agentId) q.set('agentId', route.agentId);
      if (route.status) q.set('status', route.status);
      const qs = q.toString();
      return `#/orgs/${route.orgId}/${route.name}${qs ? `?${qs}` : ''}`;
    }
    case 'not-found':
      return `#${route.path}`;
    default:
      return `#/orgs/${route.orgId}/${route.name}`;
  }
}
