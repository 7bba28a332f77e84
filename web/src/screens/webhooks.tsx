import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { ErrorBox, formatDate, Loading, Page, StatusBadge, useAction, useLoad } from '../ui';

const EVENT_TYPES = [
  ['handoff.requested', 'A conversation was handed to people'],
  ['reply.failed', 'A reply did not reach the lead'],
  ['approval.requested', 'An approval is waiting'],
  ['run.failed', 'A run failed'],
] as const;
type EventType = (typeof EVENT_TYPES)[number][0];

/** Org webhook endpoints (admins): signed deliveries of the org events; the secret is shown once. */
export function Webhooks({ orgId, admin }: { orgId: string; admin: boolean }) {
  const endpoints = useLoad(async () => (admin ? ok(await api.GET('/v1/orgs/{orgId}/webhook-endpoints', { params: { path: { orgId } } })).items : []), [orgId, admin]);
  const [secret, setSecret] = useState<string | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const create = useAction(async (form: HTMLFormElement) => {
    const data = new FormData(form);
    const description = String(data.get('description') ?? '').trim();
    const created = ok(
      await api.POST('/v1/orgs/{orgId}/webhook-endpoints', {
        params: { path: { orgId } },
        body: { url: String(data.get('url') ?? ''), eventTypes: data.getAll('eventTypes').map(String) as EventType[], ...(description ? { description } : {}) },
      }),
    );
    setSecret(created.secret);
    form.reset();
    endpoints.reload();
  });
  const remove = useAction(async (endpointId: string) => {
    ok(await api.DELETE('/v1/orgs/{orgId}/webhook-endpoints/{endpointId}', { params: { path: { orgId, endpointId } } }));
    endpoints.reload();
  });
  if (!admin) return <Page title="Webhooks"><p>Only admins manage webhook endpoints.</p></Page>;
  return (
    <Page title="Webhooks">
      <p class="muted">Your systems hear when someone is needed: each event is POSTed to the URL, signed as Standard Webhooks specifies, and retried for a day.</p>
      <form
        class="stack"
        onSubmit={(e) => {
          e.preventDefault();
          void create.run(e.currentTarget as HTMLFormElement);
        }}
      >
        <label>
          URL
          <input name="url" type="url" required maxLength={2048} placeholder="https://" />
        </label>
        <label>
          Description (optional)
          <input name="description" maxLength={200} />
        </label>
        <fieldset>
          <legend>Events (none ticked: all)</legend>
          {EVENT_TYPES.map(([type, label]) => (
            <label key={type} class="inline">
              <input type="checkbox" name="eventTypes" value={type} /> {label}
            </label>
          ))}
        </fieldset>
        <ErrorBox error={create.error} />
        <button type="submit" disabled={create.busy}>
          Add endpoint
        </button>
      </form>
      {secret && (
        <div class="notice" role="status">
          <p>Copy the signing secret now: it is shown only this once.</p>
          <input readOnly value={secret} aria-label="Signing secret" data-testid="webhook-secret" onFocus={(e) => (e.currentTarget as HTMLInputElement).select()} />
          <button type="button" class="secondary" onClick={() => setSecret(null)}>
            Done, hide it
          </button>
        </div>
      )}
      <ErrorBox error={endpoints.error ?? remove.error} />
      {endpoints.loading && !endpoints.data && <Loading what="endpoints" />}
      {endpoints.data?.length === 0 && <p class="muted">No endpoints yet.</p>}
      <ul class="stack plain">
        {endpoints.data?.map((ep) => (
          <li key={ep.id} class="card">
            <h2>{ep.url}</h2>
            <p class="muted">
              {ep.description ? `${ep.description} · ` : ''}
              {ep.eventTypes.length ? ep.eventTypes.join(', ') : 'all events'} · added {formatDate(ep.createdAt)}
            </p>
            <div class="row">
              <button type="button" class="secondary" aria-expanded={open === ep.id} onClick={() => setOpen(open === ep.id ? null : ep.id)}>
                {open === ep.id ? 'Hide deliveries' : 'Deliveries'}
              </button>
              <button type="button" class="danger" disabled={remove.busy} onClick={() => confirm(`Delete the endpoint ${ep.url}? Its pending deliveries stop.`) && void remove.run(ep.id)}>
                Delete
              </button>
            </div>
            {open === ep.id && <Deliveries orgId={orgId} endpointId={ep.id} />}
          </li>
        ))}
      </ul>
    </Page>
  );
}

function Deliveries({ orgId, endpointId }: { orgId: string; endpointId: string }) {
  const deliveries = useLoad(
    async () => ok(await api.GET('/v1/orgs/{orgId}/webhook-endpoints/{endpointId}/deliveries', { params: { path: { orgId, endpointId }, query: { limit: 20 } } })).items,
    [orgId, endpointId],
  );
  if (deliveries.error) return <ErrorBox error={deliveries.error} />;
  if (!deliveries.data) return <Loading what="deliveries" />;
  if (deliveries.data.length === 0) return <p class="muted">Nothing delivered yet.</p>;
  return (
    <ul class="plain" aria-label="Deliveries">
      {deliveries.data.map((d) => (
        <li key={d.id} class="delivery">
          <p>
            <strong>{d.eventType}</strong> <StatusBadge status={d.status} /> · {d.attempts} attempt{d.attempts === 1 ? '' : 's'}
            {d.lastStatusCode ? ` · last answer ${d.lastStatusCode}` : ''}
            {d.lastError ? ` · ${d.lastError}` : ''}
            {d.nextAttemptAt && d.status === 'pending' ? ` · next try ${formatDate(d.nextAttemptAt)}` : ''}
            <span class="muted"> · {formatDate(d.createdAt)}</span>
          </p>
          {d.attemptLog.length > 0 && (
            <ol class="attempts">
              {d.attemptLog.map((a) => (
                <li key={a.attempt}>
                  {formatDate(a.attemptedAt)}: {a.statusCode ?? 'no answer'}
                  {a.error ? ` (${a.error})` : ''} in {a.durationMs} ms
                </li>
              ))}
            </ol>
          )}
        </li>
      ))}
    </ul>
  );
}
