import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { ErrorBox, formatDate, formValues, Loading, Page, StatusBadge, useAction, useLoad } from '../ui';

type Provider = 'kommo' | 'hubspot';

/** CRM connections: connect by token (or OAuth), test, schedule, sync now, history and webhooks. */
export function CrmConnections({ orgId, admin }: { orgId: string; admin: boolean }) {
  const connections = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/crm/connections', { params: { path: { orgId } } })).items, [orgId]);
  const [created, setCreated] = useState<{ authorizeUrl: string | null; webhookUrl: string } | null>(null);
  const connect = useAction(async (values: Record<string, string>) => {
    const auth = values.kind === 'oauth' ? { kind: 'oauth' as const } : { kind: 'token' as const, token: values.token ?? '', ...(values.accountUrl ? { accountUrl: values.accountUrl } : {}) };
    const answer = ok(await api.POST('/v1/orgs/{orgId}/crm/connections', { params: { path: { orgId } }, body: { provider: values.provider as Provider, name: values.name ?? '', auth } }));
    setCreated({ authorizeUrl: answer.authorizeUrl, webhookUrl: answer.webhookUrl });
    connections.reload();
  });
  return (
    <Page title="CRM connections">
      <ErrorBox error={connections.error} />
      {connections.loading && <Loading what="connections" />}
      {connections.data?.length === 0 && <p>No CRM connected yet.</p>}
      {connections.data?.map((c) => <Connection key={c.id} orgId={orgId} connection={c} admin={admin} onChange={connections.reload} />)}
      {admin && (
        <>
          <h2>Connect a CRM</h2>
          <form class="stack" onSubmit={(e) => void connect.run(formValues(e))}>
            <label>
              Name
              <input name="name" required maxLength={200} />
            </label>
            <label>
              CRM
              <select name="provider">
                <option value="hubspot">HubSpot</option>
                <option value="kommo">Kommo (amoCRM)</option>
              </select>
            </label>
            <label>
              How
              <select name="kind">
                <option value="token">Access token (private app / long-lived token)</option>
                <option value="oauth">OAuth (sign in at the CRM)</option>
              </select>
            </label>
            <label>
              Token (for token connections)
              <input name="token" type="password" autoComplete="off" />
            </label>
            <label>
              Account URL (Kommo: https://yourname.kommo.com)
              <input name="accountUrl" type="url" />
            </label>
            <ErrorBox error={connect.error} />
            <button type="submit" disabled={connect.busy}>
              Connect
            </button>
          </form>
          {created && (
            <div class="notice" role="status">
              {created.authorizeUrl && (
                <p>
                  <a href={created.authorizeUrl}>Continue at the CRM to authorize</a>
                </p>
              )}
              <p>
                Webhook URL for the CRM: <code>{created.webhookUrl}</code>
              </p>
            </div>
          )}
        </>
      )}
    </Page>
  );
}

interface ConnectionView {
  id: string;
  name: string;
  provider: string;
  status: string;
  accountId: string | null;
  lastError: { type: string; message: string } | null;
  schedule: Record<string, unknown> | null;
}

function Connection({ orgId, connection: c, admin, onChange }: { orgId: string; connection: ConnectionView; admin: boolean; onChange: () => void }) {
  const path = { orgId, connectionId: c.id };
  const [open, setOpen] = useState(false);
  const [testResult, setTestResult] = useState<string | null>(null);
  const syncs = useLoad(async () => (open ? ok(await api.GET('/v1/orgs/{orgId}/crm/connections/{connectionId}/syncs', { params: { path, query: { limit: 10 } } })).items : []), [open, c.id]);
  const deliveries = useLoad(
    async () => (open && admin ? ok(await api.GET('/v1/orgs/{orgId}/crm/connections/{connectionId}/webhook-deliveries', { params: { path } })).items : []),
    [open, c.id],
  );
  const test = useAction(async () => {
    const r = ok(await api.POST('/v1/orgs/{orgId}/crm/connections/{connectionId}/test', { params: { path } }));
    setTestResult(r.ok ? `Connected (account ${r.accountId ?? 'unknown'})` : `Failed: ${r.error?.message ?? 'unknown error'}`);
  });
  const sync = useAction(async (mode: 'incremental' | 'full') => {
    ok(await api.POST('/v1/orgs/{orgId}/crm/connections/{connectionId}/syncs', { params: { path }, body: { mode } }));
    setOpen(true);
    setTimeout(syncs.reload, 1000);
  });
  const schedule = useAction(async (values: Record<string, string>) => {
    const every = Number(values.intervalMinutes);
    ok(
      await api.PUT('/v1/orgs/{orgId}/crm/connections/{connectionId}/schedule', {
        params: { path },
        body: values.cron ? { cron: values.cron, ...(values.timeZone ? { timeZone: values.timeZone } : {}), paused: values.paused === 'on' } : { intervalSeconds: Math.round(every * 60), paused: values.paused === 'on' },
      }),
    );
    onChange();
  });
  const sched = c.schedule ?? {};
  return (
    <article class="card" aria-label={`Connection ${c.name}`}>
      <h2>
        {c.name} <span class="muted">({c.provider})</span>
      </h2>
      <p>
        <StatusBadge status={c.status} /> {c.accountId ? `account ${c.accountId}` : ''}
      </p>
      {c.lastError && <ErrorBox error={new Error(`${c.lastError.type}: ${c.lastError.message}`)} />}
      {admin && (
        <div class="row">
          <button type="button" class="secondary" disabled={test.busy} onClick={() => void test.run()}>
            Test
          </button>
          <button type="button" disabled={sync.busy} onClick={() => void sync.run('incremental')}>
            Sync now
          </button>
          <button type="button" class="secondary" disabled={sync.busy} onClick={() => void sync.run('full')}>
            Full sync
          </button>
        </div>
      )}
      {testResult && <p role="status">{testResult}</p>}
      <ErrorBox error={test.error ?? sync.error} />
      {admin && (
        <details>
          <summary>Schedule</summary>
          <form class="stack" onSubmit={(e) => void schedule.run(formValues(e))}>
            <label>
              Every (minutes)
              <input name="intervalMinutes" type="number" min={1} defaultValue={typeof sched.intervalSeconds === 'number' ? sched.intervalSeconds / 60 : 60} />
            </label>
            <label>
              Or cron (five fields, overrides the interval)
              <input name="cron" defaultValue={typeof sched.cron === 'string' ? sched.cron : ''} placeholder="0 * * * *" />
            </label>
            <label>
              Time zone (for cron)
              <input name="timeZone" defaultValue={typeof sched.timeZone === 'string' ? sched.timeZone : ''} placeholder="Europe/Berlin" />
            </label>
            <label class="inline">
              <input name="paused" type="checkbox" defaultChecked={sched.paused === true} /> Paused
            </label>
            <ErrorBox error={schedule.error} />
            <button type="submit" disabled={schedule.busy}>
              Save schedule
            </button>
          </form>
        </details>
      )}
      <details onToggle={(e) => setOpen((e.currentTarget as HTMLDetailsElement).open)}>
        <summary>Sync history{admin ? ' and webhook deliveries' : ''}</summary>
        <button type="button" class="secondary" onClick={() => { syncs.reload(); deliveries.reload(); }}>
          Refresh
        </button>
        <ErrorBox error={syncs.error ?? deliveries.error} />
        <ul>
          {syncs.data?.map((s) => (
            <li key={s.id}>
              <StatusBadge status={s.status} /> {s.mode} ({s.trigger}) {formatDate(s.startedAt)}: +{s.counts.added} ~{s.counts.updated} −{s.counts.deleted}
              {s.counts.failed > 0 ? `, ${s.counts.failed} failed` : ''}, {s.counts.pages} pages {s.error ? `· ${s.error.message}` : ''}
            </li>
          ))}
        </ul>
        {admin && (
          <>
            <h3>Webhook deliveries</h3>
            {deliveries.data?.length === 0 && <p class="muted">None yet.</p>}
            <ul>
              {deliveries.data?.map((d) => (
                <li key={d.dedupeKey}>
                  {formatDate(d.receivedAt)} {d.kind} {d.objectType} {d.externalId} ({d.change}) {d.processedAt ? 'processed' : 'waiting for redelivery'}
                </li>
              ))}
            </ul>
          </>
        )}
      </details>
    </article>
  );
}
