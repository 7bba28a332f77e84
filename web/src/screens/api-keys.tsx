import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { ErrorBox, formatDate, formValues, Loading, Page, useAction, useLoad } from '../ui';

/** Org API keys: the secret is shown once, right after creation, and never again. */
export function ApiKeys({ orgId, admin }: { orgId: string; admin: boolean }) {
  const keys = useLoad(async () => (admin ? ok(await api.GET('/v1/orgs/{orgId}/api-keys', { params: { path: { orgId }, query: { limit: 100 } } })).items : []), [orgId, admin]);
  const [secret, setSecret] = useState<string | null>(null);
  const create = useAction(async (values: Record<string, string>, form: HTMLFormElement) => {
    const created = ok(await api.POST('/v1/orgs/{orgId}/api-keys', { params: { path: { orgId } }, body: { name: values.name ?? '', scope: (values.scope ?? 'member') as 'member' | 'admin' } }));
    setSecret(created.key);
    form.reset();
    keys.reload();
  });
  const revoke = useAction(async (keyId: string) => {
    ok(await api.DELETE('/v1/orgs/{orgId}/api-keys/{keyId}', { params: { path: { orgId, keyId } } }));
    keys.reload();
  });
  if (!admin) return <Page title="API keys"><p>Only admins manage API keys.</p></Page>;
  return (
    <Page title="API keys">
      <form class="stack" aria-label="Create an API key" onSubmit={(e) => void create.run(formValues(e), e.currentTarget as HTMLFormElement)}>
        <label>
          Name
          <input name="name" required maxLength={200} />
        </label>
        <label>
          Scope
          <select name="scope">
            <option value="member">member</option>
            <option value="admin">admin</option>
          </select>
        </label>
        <ErrorBox error={create.error} />
        <button type="submit" disabled={create.busy}>
          Create key
        </button>
      </form>
      {secret && (
        <div class="notice" role="status">
          <p>Copy the key now: it is shown only this once.</p>
          <input readOnly value={secret} aria-label="New API key" data-testid="api-key-secret" onFocus={(e) => (e.currentTarget as HTMLInputElement).select()} />
          <button type="button" class="secondary" onClick={() => setSecret(null)}>
            Done, hide it
          </button>
        </div>
      )}
      <ErrorBox error={keys.error ?? revoke.error} />
      {!keys.data && keys.loading && <Loading what="keys" />}
      {keys.data?.length === 0 && <p>No API keys yet.</p>}
      <ul class="cards">
        {keys.data?.map((k) => (
          <li key={k.id} class="card" aria-label={`API key ${k.name}`}>
            <h2>{k.name}</h2>
            <p class="muted">
              <code>{k.prefix}…</code> · {k.scope} · created {formatDate(k.createdAt)} · last used {formatDate(k.lastUsedAt)}
            </p>
            {k.revokedAt ? (
              <p>Revoked {formatDate(k.revokedAt)}</p>
            ) : (
              <button type="button" class="danger" disabled={revoke.busy} onClick={() => void revoke.run(k.id)}>
                Revoke
              </button>
            )}
          </li>
        ))}
      </ul>
    </Page>
  );
}
