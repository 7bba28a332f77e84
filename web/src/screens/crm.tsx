import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { describeSync, nextPoll, syncPoll } from '../state/live';
import { ErrorBox, formatDate, formValues, Loading, Page, StatusBadge, useAction, useLoad, usePoll } from '../ui';

type Provider = 'kommo' | 'hubspot';
const PROVIDER_NAMES: Record<Provider, string> = { hubspot: 'HubSpot', kommo: 'Kommo' };

/** CRM connections: connect by token or OAuth, test, schedule, sync now, live history, webhooks, messaging. */
export function CrmConnections({ orgId, admin }: { orgId: string; admin: boolean }) {
  const connections = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/crm/connections', { params: { path: { orgId } } })).items, [orgId]);
  const [created, setCreated] = useState<{ name: string; provider: Provider; authorizeUrl: string | null; webhookUrl: string } | null>(null);
  const [kind, setKind] = useState<'token' | 'oauth'>('token');
  const [provider, setProvider] = useState<Provider>('hubspot');
  const connect = useAction(async (values: Record<string, string>, form: HTMLFormElement) => {
    const auth = kind === 'oauth' ? { kind: 'oauth' as const } : { kind: 'token' as const, token: values.token ?? '', ...(values.accountUrl ? { accountUrl: values.accountUrl } : {}) };
    const answer = ok(await api.POST('/v1/orgs/{orgId}/crm/connections', { params: { path: { orgId } }, body: { provider, name: values.name ?? '', auth } }));
    setCreated({ name: answer.connection.name, provider, authorizeUrl: answer.authorizeUrl, webhookUrl: answer.webhookUrl });
    form.reset();
    connections.reload();
  });
  return (
    <Page title="CRM connections">
      <ErrorBox error={connections.error} />
      {!connections.data && connections.loading && <Loading what="connections" />}
      {connections.data?.length === 0 && <p>No CRM connected yet.</p>}
      {connections.data?.map((c) => <Connection key={c.id} orgId={orgId} connection={c} admin={admin} onChange={connections.reload} />)}
      {admin && (
        <>
          <h2>Connect a CRM</h2>
          <form class="stack" aria-label="Connect a CRM" onSubmit={(e) => void connect.run(formValues(e), e.currentTarget as HTMLFormElement)}>
            <label>
              Name
              <input name="name" required maxLength={200} />
            </label>
            <label>
              CRM
              <select name="provider" value={provider} onChange={(e) => setProvider((e.currentTarget as HTMLSelectElement).value as Provider)}>
                <option value="hubspot">HubSpot</option>
                <option value="kommo">Kommo (amoCRM)</option>
              </select>
            </label>
            <label>
              How
              <select name="kind" value={kind} onChange={(e) => setKind((e.currentTarget as HTMLSelectElement).value as 'token' | 'oauth')}>
                <option value="token">{provider === 'hubspot' ? 'Private app access token' : 'Long-lived token'}</option>
                <option value="oauth">OAuth (sign in at {PROVIDER_NAMES[provider]})</option>
              </select>
            </label>
            {kind === 'token' && (
              <>
                <label>
                  Token
                  <input name="token" type="password" autoComplete="off" required minLength={10} />
                </label>
                {provider === 'kommo' && (
                  <label>
                    Account URL (like https://yourname.kommo.com)
                    <input name="accountUrl" type="url" required />
                  </label>
                )}
              </>
            )}
            <ErrorBox error={connect.error} />
            <button type="submit" disabled={connect.busy}>
              {kind === 'oauth' ? `Continue to ${PROVIDER_NAMES[provider]}` : 'Connect'}
            </button>
          </form>
          {created && (
            <div class="notice" role="status">
              {created.authorizeUrl ? (
                <p>
                  “{created.name}” waits for your authorization: <a href={created.authorizeUrl}>Authorize at {PROVIDER_NAMES[created.provider]}</a>
                </p>
              ) : (
                <p>“{created.name}” is connected.</p>
              )}
              <p>
                Webhook URL to enter in the CRM (shown once): <code>{created.webhookUrl}</code>
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
  provider: Provider;
  status: string;
  accountId: string | null;
  lastError: { type: string; message: string } | null;
  schedule: Record<string, unknown> | null;
}

function Connection({ orgId, connection: c, admin, onChange }: { orgId: string; connection: ConnectionView; admin: boolean; onChange: () => void }) {
  const path = { orgId, connectionId: c.id };
  const [open, setOpen] = useState(false);
  const [testResult, setTestResult] = useState<{ ok: boolean; text: string } | null>(null);
  const [pending, setPending] = useState<{ after: string | null; since: number } | null>(null);
  const syncs = useLoad(async () => (open ? ok(await api.GET('/v1/orgs/{orgId}/crm/connections/{connectionId}/syncs', { params: { path, query: { limit: 10 } } })).items : []), [open, c.id]);
  usePoll(syncPoll(syncs.data, pending, Date.now()), syncs.reload, syncs.data);
  const deliveries = useLoad(
    async () => (open && admin ? ok(await api.GET('/v1/orgs/{orgId}/crm/connections/{connectionId}/webhook-deliveries', { params: { path } })).items : []),
    [open, c.id],
  );
  // Deliveries the intake has not processed yet are followed until it has (a little slower than syncs).
  usePoll(nextPoll(deliveries.data, (d) => d.processedAt === null, 3000), deliveries.reload, deliveries.data);
  const test = useAction(async () => {
    const r = ok(await api.POST('/v1/orgs/{orgId}/crm/connections/{connectionId}/test', { params: { path } }));
    setTestResult(r.ok ? { ok: true, text: `Connection works (account ${r.accountId ?? 'unknown'}).` } : { ok: false, text: `The CRM refused: ${r.error?.message ?? 'unknown error'}` });
  });
  const sync = useAction(async (mode: 'incremental' | 'full') => {
    const newest = open ? (syncs.data?.[0]?.id ?? null) : ok(await api.GET('/v1/orgs/{orgId}/crm/connections/{connectionId}/syncs', { params: { path, query: { limit: 1 } } })).items[0]?.id ?? null;
    ok(await api.POST('/v1/orgs/{orgId}/crm/connections/{connectionId}/syncs', { params: { path }, body: { mode } }));
    setPending({ after: newest, since: Date.now() });
    if (open) syncs.reload();
    else setOpen(true);
  });
  const schedule = useAction(async (values: Record<string, string>) => {
    const paused = values.paused === 'on';
    const body = values.cron
      ? { cron: values.cron, ...(values.timeZone ? { timeZone: values.timeZone } : {}), paused }
      : { intervalSeconds: Math.round(Number(values.intervalMinutes) * 60), paused };
    ok(await api.PUT('/v1/orgs/{orgId}/crm/connections/{connectionId}/schedule', { params: { path }, body }));
    onChange();
  });
  const sched = c.schedule ?? {};
  const running = syncs.data?.some((s) => s.status === 'running') ?? false;
  return (
    <article class="card" aria-label={`Connection ${c.name}`}>
      <h2>
        {c.name} <span class="muted">({PROVIDER_NAMES[c.provider] ?? c.provider})</span>
      </h2>
      <p>
        <StatusBadge status={c.status} /> {c.accountId ? `account ${c.accountId}` : c.status === 'pending' ? 'waiting for authorization at the CRM' : ''}
      </p>
      <p class="muted">{scheduleText(c.schedule)}</p>
      {c.lastError && (
        <div class="error" role="alert">
          <strong>Last error ({c.lastError.type})</strong> <span>{c.lastError.message}</span>
        </div>
      )}
      {admin && (
        <div class="row">
          <button type="button" class="secondary" disabled={test.busy} onClick={() => void test.run()}>
            Test connection
          </button>
          <button type="button" disabled={sync.busy || running} onClick={() => void sync.run('incremental')}>
            Sync now
          </button>
          <button type="button" class="secondary" disabled={sync.busy || running} onClick={() => void sync.run('full')}>
            Full sync
          </button>
        </div>
      )}
      {testResult && <p role="status" class={testResult.ok ? undefined : 'error'}>{testResult.text}</p>}
      <ErrorBox error={test.error ?? sync.error} />
      {admin && (
        <details>
          <summary>Schedule</summary>
          <form class="stack" aria-label={`Schedule of ${c.name}`} onSubmit={(e) => void schedule.run(formValues(e))}>
            <label>
              Every (minutes)
              <input name="intervalMinutes" type="number" min={1} max={10080} defaultValue={String(typeof sched.intervalSeconds === 'number' ? sched.intervalSeconds / 60 : 60)} />
            </label>
            <label>
              Or cron (five fields; replaces the interval)
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
      {admin && <MessagingSettings orgId={orgId} connection={c} />}
      <details open={open} onToggle={(e) => setOpen((e.currentTarget as HTMLDetailsElement).open)}>
        <summary>Sync history{admin ? ' and webhook deliveries' : ''}</summary>
        <ErrorBox error={syncs.error ?? deliveries.error} />
        {open && !syncs.data && <Loading what="syncs" />}
        {syncs.data?.length === 0 && <p class="muted">No sync yet.</p>}
        {/* Polite live region: progress lines are announced as they change, without interrupting. */}
        <ul aria-live="polite" aria-label={`Syncs of ${c.name}`}>
          {syncs.data?.map((s) => (
            <li key={s.id}>
              <StatusBadge status={s.status} /> {s.mode} sync ({s.trigger}), started {formatDate(s.startedAt)}
              {s.finishedAt ? `, finished ${formatDate(s.finishedAt)}` : ''}. {describeSync(s)}
            </li>
          ))}
        </ul>
        {admin && (
          <>
            <h3>Webhook deliveries</h3>
            <button type="button" class="secondary" onClick={deliveries.reload}>
              Check for new deliveries
            </button>
            {deliveries.data?.length === 0 && <p class="muted">None received yet.</p>}
            <ul aria-label={`Webhook deliveries of ${c.name}`}>
              {deliveries.data?.map((d) => (
                <li key={d.dedupeKey}>
                  {formatDate(d.receivedAt)}: {d.kind} {d.objectType} {d.externalId} ({d.change}),{' '}
                  {d.processedAt ? (d.error ? `processed without effect: ${d.error}` : 'processed') : 'not processed yet (retrying while the CRM is unreachable)'}
                </li>
              ))}
            </ul>
          </>
        )}
      </details>
    </article>
  );
}

function scheduleText(s: Record<string, unknown> | null): string {
  if (!s) return 'No schedule: syncs run when started here or by webhooks.';
  const when = typeof s.cron === 'string' ? `cron ${s.cron}${typeof s.timeZone === 'string' ? ` (${s.timeZone})` : ''}` : `every ${Number(s.intervalSeconds) / 60} minutes`;
  return `Scheduled ${when}${s.paused === true ? ', paused' : ''}.`;
}

/** How agent replies reach the connection's lead threads (the API's messaging settings). */
function MessagingSettings({ orgId, connection: c }: { orgId: string; connection: ConnectionView }) {
  const path = { orgId, connectionId: c.id };
  const [open, setOpen] = useState(false);
  const [saved, setSaved] = useState(false);
  const settings = useLoad(async () => (open ? ok(await api.GET('/v1/orgs/{orgId}/crm/connections/{connectionId}/messaging-settings', { params: { path } })) : null), [open, c.id]);
  const save = useAction(async (values: Record<string, string>) => {
    setSaved(false);
    const num = (v: string | undefined) => (v ? Number(v) : null);
    const s = settings.data;
    ok(
      await api.PUT('/v1/orgs/{orgId}/crm/connections/{connectionId}/messaging-settings', {
        params: { path },
        body:
          c.provider === 'hubspot'
            ? { ...(s ?? {}), hubspotSenderActorId: values.hubspotSenderActorId || null, quotaWarnPercent: Number(values.quotaWarnPercent) }
            : {
                ...(s ?? {}),
                kommoMonthlyQuota: num(values.kommoMonthlyQuota),
                kommoSalesbot: values.botId && values.replyFieldId ? { botId: values.botId, replyFieldId: values.replyFieldId } : null,
                quotaWarnPercent: Number(values.quotaWarnPercent),
              },
      }),
    );
    setSaved(true);
    settings.reload();
  });
  const s = settings.data;
  return (
    <details onToggle={(e) => setOpen((e.currentTarget as HTMLDetailsElement).open)}>
      <summary>Messaging settings</summary>
      <ErrorBox error={settings.error} />
      {open && !s && !settings.error && <Loading what="messaging settings" />}
      {s && (
        <form class="stack" aria-label={`Messaging settings of ${c.name}`} onSubmit={(e) => void save.run(formValues(e))}>
          {c.provider === 'hubspot' ? (
            <label>
              Sender (the HubSpot user agents reply as, A-&lt;userId&gt;)
              <input name="hubspotSenderActorId" defaultValue={s.hubspotSenderActorId ?? ''} placeholder="A-12345" />
            </label>
          ) : (
            <>
              <label>
                Messages per month the Kommo plan allows (empty: not counted)
                <input name="kommoMonthlyQuota" type="number" min={0} defaultValue={s.kommoMonthlyQuota === null ? '' : String(s.kommoMonthlyQuota)} />
              </label>
              <label>
                Salesbot id (used beyond the quota)
                <input name="botId" inputMode="numeric" defaultValue={s.kommoSalesbot?.botId ?? ''} />
              </label>
              <label>
                Reply field id of that Salesbot
                <input name="replyFieldId" inputMode="numeric" defaultValue={s.kommoSalesbot?.replyFieldId ?? ''} />
              </label>
            </>
          )}
          <label>
            Warn when this share of the quota is spent (%)
            <input name="quotaWarnPercent" type="number" min={1} max={100} defaultValue={String(s.quotaWarnPercent)} />
          </label>
          <ErrorBox error={save.error} />
          {saved && <p role="status">Messaging settings saved.</p>}
          <button type="submit" disabled={save.busy}>
            Save messaging settings
          </button>
        </form>
      )}
    </details>
  );
}
