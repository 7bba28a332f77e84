import { render } from 'preact';
import type { Session } from '@supabase/supabase-js';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ok } from './api/client';
import { currentSession, loadConfig, onSessionChange, auth, type ConsoleConfig } from './auth';
import { href, parseRoute, type Route } from './state/route';
import { forgetOrg, homeRoute, membership, rememberedOrg, rememberOrg } from './state/org-memory';
import { ErrorBox, Loading, useLoad } from './ui';
import { SignIn } from './screens/sign-in';
import { AcceptInvite, NewOrg } from './screens/orgs';
import { AgentEditor, AgentList } from './screens/agents';
import { RunList, RunTimeline } from './screens/runs';
import { ApprovalsInbox } from './screens/approvals';
import { Members } from './screens/members';
import { ApiKeys } from './screens/api-keys';
import { Knowledge } from './screens/knowledge';
import { Usage } from './screens/usage';
import { CrmConnections } from './screens/crm';
import { ConversationList, ConversationThread } from './screens/conversations';
import { Notices } from './screens/notices';
import { Webhooks } from './screens/webhooks';
import { Settings } from './screens/settings';
import './style.css';

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  return route;
}

const SECTIONS: Array<[Route['name'], string]> = [
  ['agents', 'Agents'],
  ['runs', 'Runs'],
  ['approvals', 'Approvals'],
  ['conversations', 'Conversations'],
  ['crm', 'CRM'],
  ['knowledge', 'Knowledge'],
  ['members', 'Members'],
  ['api-keys', 'API keys'],
  ['webhooks', 'Webhooks'],
  ['usage', 'Usage'],
  ['settings', 'Settings'],
];

function Shell({ session, route, config }: { session: Session; route: Route; config: ConsoleConfig }) {
  const userId = session.user.id;
  const remembered = rememberedOrg(localStorage, userId);
  // A returning user's `/` opens their last org at once; its membership is checked when the list arrives.
  const early = route.name === 'home' ? homeRoute(remembered, undefined) : null;
  const shown = early ?? route;
  const orgId = 'orgId' in shown ? shown.orgId : undefined;
  // Refetched per org visited: a founded org or an accepted invite adds one to the list.
  const orgs = useLoad(async () => ok(await api.GET('/v1/orgs', { params: { query: { limit: 100 } } })).items, [userId, orgId]);
  const openedFromMemory = useRef<string | null>(null);
  if (early && 'orgId' in early) openedFromMemory.current = early.orgId;
  // A list still loading may be the previous one (an org just founded is not in it yet): keep checking.
  const status = orgId ? membership(orgId, orgs.loading ? undefined : orgs.data, openedFromMemory.current) : undefined;

  useEffect(() => {
    if (route.name !== 'home') return;
    const target = early ?? homeRoute(remembered, orgs.data);
    if (target) location.replace(href(target));
  }, [route, orgs.data]);
  useEffect(() => {
    if (orgId && status === 'member') rememberOrg(localStorage, userId, orgId);
    if (orgId && status === 'gone') {
      // Left (or removed from) the remembered org since the last visit: go where `/` would have gone.
      forgetOrg(localStorage, userId, orgId);
      openedFromMemory.current = null;
      location.replace(href(homeRoute(null, orgs.data)!));
    }
  }, [orgId, status]);

  const org = orgs.data?.find((o) => o.id === orgId);
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="#/">
          Sales agents
        </a>
        <label class="org-switch">
          <span class="visually-hidden">Organization</span>
          <select
            aria-label="Organization"
            value={orgId ?? ''}
            onChange={(e) => {
              const value = (e.currentTarget as HTMLSelectElement).value;
              location.hash = value === 'new' ? href({ name: 'new-org' }) : href({ name: 'agents', orgId: value });
            }}
          >
            {!orgId && <option value="">Choose an organization</option>}
            {orgId && status === 'checking' && !orgs.data?.some((o) => o.id === orgId) && <option value={orgId}>Loading organizations…</option>}
            {orgs.data?.map((o) => (
              <option key={o.id} value={o.id}>
                {o.name}
              </option>
            ))}
            <option value="new">+ New organization</option>
          </select>
        </label>
        <span class="who">{session.user.email}</span>
        <button type="button" class="link" onClick={() => void auth().signOut()}>
          Sign out
        </button>
      </header>
      {orgId && (
        <nav aria-label="Sections" class="sections">
          {SECTIONS.map(([name, label]) => {
            const current = route.name === name || (name === 'runs' && route.name === 'run') || (name === 'conversations' && route.name === 'conversation') || (name === 'agents' && (route.name === 'agent' || route.name === 'new-agent'));
            return (
              <a key={name} href={href({ name, orgId } as Route)} aria-current={current ? 'page' : undefined}>
                {label}
              </a>
            );
          })}
        </nav>
      )}
      <main id="main" tabIndex={-1}>
        {org && <Notices key={org.id} orgId={org.id} />}
        <ErrorBox error={orgs.error} />
        {status === 'not-member' ? (
          <ErrorBox error={new Error('This organization does not exist or you are not a member of it.')} />
        ) : status === 'gone' ? (
          <Loading what="your organizations" />
        ) : (
          <Screen route={shown} config={config} role={org?.role} checking={status === 'checking'} />
        )}
      </main>
    </>
  );
}

function Screen({ route, config, role, checking }: { route: Route; config: ConsoleConfig; role: string | undefined; checking: boolean }) {
  const admin = role === 'admin' || role === 'owner';
  switch (route.name) {
    case 'home':
      return <Loading what="your organizations" />;
    case 'signin':
      location.replace('#/');
      return null;
    case 'new-org':
      return <NewOrg />;
    case 'invite':
      return <AcceptInvite token={route.token} />;
    case 'agents':
      return <AgentList orgId={route.orgId} admin={admin} checking={checking} />;
    case 'new-agent':
      return <AgentEditor orgId={route.orgId} admin={admin} />;
    case 'agent':
      return <AgentEditor orgId={route.orgId} agentId={route.agentId} admin={admin} />;
    case 'runs':
      return <RunList route={route} />;
    case 'run':
      return <RunTimeline orgId={route.orgId} runId={route.runId} temporalUiUrl={config.temporalUiUrl} />;
    case 'approvals':
      return <ApprovalsInbox orgId={route.orgId} />;
    case 'conversations':
      return <ConversationList route={route} />;
    case 'conversation':
      return <ConversationThread orgId={route.orgId} runId={route.runId} />;
    case 'webhooks':
      return <Webhooks orgId={route.orgId} admin={admin} />;
    case 'crm':
      return <CrmConnections orgId={route.orgId} admin={admin} />;
    case 'knowledge':
      return <Knowledge orgId={route.orgId} admin={admin} />;
    case 'members':
      return <Members orgId={route.orgId} admin={admin} />;
    case 'api-keys':
      return <ApiKeys orgId={route.orgId} admin={admin} />;
    case 'usage':
      return <Usage orgId={route.orgId} />;
    case 'settings':
      return <Settings orgId={route.orgId} admin={admin} />;
    case 'not-found':
      return <ErrorBox error={new Error(`Nothing lives at ${route.path}.`)} />;
  }
}

function App() {
  const route = useRoute();
  const [state, setState] = useState<{ config?: ConsoleConfig; session?: Session | null; error?: unknown }>({});
  useEffect(() => {
    let unsubscribe = () => {};
    loadConfig()
      .then(async (config) => {
        setState({ config, session: await currentSession() });
        unsubscribe = onSessionChange((session) => setState((s) => ({ ...s, session })));
      })
      .catch((error: unknown) => setState({ error }));
    return () => unsubscribe();
  }, []);

  if (state.error) return <main id="main"><ErrorBox error={state.error} /></main>;
  if (!state.config || state.session === undefined) return <main id="main"><Loading what="the console" /></main>;
  if (!state.session) return <SignIn config={state.config} inviteToken={route.name === 'invite' ? route.token : undefined} />;
  return <Shell session={state.session} route={route} config={state.config} />;
}

render(<App />, document.getElementById('app')!);
