import { api, ok } from '../api/client';
import { ErrorBox, formValues, Loading, Page, useAction, useLoad } from '../ui';

/**
 * The org's name, its own model provider and its daily token quota. Members read them; the
 * controls are disabled for them, since the API answers their writes with 403. The provider's key
 * is write-only: the field is never pre-filled and the page shows only its last four characters.
 */
export function Settings({ orgId, admin }: { orgId: string; admin: boolean }) {
  const org = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}', { params: { path: { orgId } } })), [orgId]);
  const provider = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/llm-provider', { params: { path: { orgId } } })), [orgId]);
  const quota = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/quota', { params: { path: { orgId } } })), [orgId]);

  const rename = useAction(async (values: Record<string, string>) => {
    ok(await api.PATCH('/v1/orgs/{orgId}', { params: { path: { orgId } }, body: { name: values.name ?? '' } }));
    org.reload();
  });
  const saveProvider = useAction(async (values: Record<string, string>, form: HTMLFormElement) => {
    const apiKey = values.apiKey?.trim();
    const embeddingModel = values.embeddingModel?.trim();
    ok(
      await api.PUT('/v1/orgs/{orgId}/llm-provider', {
        params: { path: { orgId } },
        // No key keeps the stored one (the API asks for it when there is none or the URL changes).
        body: { baseUrl: values.baseUrl ?? '', defaultModel: values.defaultModel ?? '', embeddingModel: embeddingModel ? embeddingModel : null, ...(apiKey ? { apiKey } : {}) },
      }),
    );
    const keyInput = form.elements.namedItem('apiKey');
    if (keyInput instanceof HTMLInputElement) keyInput.value = '';
    provider.reload();
  });
  const removeProvider = useAction(async () => {
    ok(await api.DELETE('/v1/orgs/{orgId}/llm-provider', { params: { path: { orgId } } }));
    provider.reload();
  });
  const saveQuota = useAction(async (values: Record<string, string>) => {
    const raw = values.dailyTokenQuota?.trim();
    ok(await api.PUT('/v1/orgs/{orgId}/quota', { params: { path: { orgId } }, body: { dailyTokenQuota: raw ? Number(raw) : null } }));
    quota.reload();
  });

  const current = provider.data?.provider;
  return (
    <Page title="Settings">
      {!admin && <p class="notice">Only admins change these settings.</p>}

      <h2>Organization</h2>
      <ErrorBox error={org.error} />
      {org.data && (
        <form class="stack" aria-label="Organization name" onSubmit={(e) => void rename.run(formValues(e))}>
          <label>
            Name
            <input name="name" required maxLength={200} defaultValue={org.data.name} key={org.data.name} disabled={!admin} />
          </label>
          <ErrorBox error={rename.error} />
          {admin && (
            <button type="submit" disabled={rename.busy}>
              Rename
            </button>
          )}
        </form>
      )}

      <h2>AI model</h2>
      <ErrorBox error={provider.error} />
      {!provider.data && provider.loading && <Loading what="the model provider" />}
      {provider.data && (
        <>
          <p data-testid="provider-source">
            {current ? 'Runs use this organization’s own OpenAI-compatible provider.' : 'Runs use the platform’s model.'}
          </p>
          <form class="stack" aria-label="Model provider" onSubmit={(e) => void saveProvider.run(formValues(e), e.currentTarget as HTMLFormElement)}>
            <label>
              Base URL
              <input name="baseUrl" type="url" required maxLength={2048} placeholder="https://api.openai.com/v1" defaultValue={current?.baseUrl ?? ''} key={`b${current?.updatedAt}`} disabled={!admin} />
            </label>
            <label>
              Default model
              <input name="defaultModel" required maxLength={200} defaultValue={current?.defaultModel ?? ''} key={`d${current?.updatedAt}`} disabled={!admin} />
            </label>
            <label>
              Embedding model (optional)
              <input name="embeddingModel" maxLength={200} defaultValue={current?.embeddingModel ?? ''} key={`e${current?.updatedAt}`} disabled={!admin} />
            </label>
            <label>
              API key
              {/* Never pre-filled: the API does not answer the key, and the browser should not keep it. */}
              <input name="apiKey" type="password" autoComplete="new-password" maxLength={1000} aria-describedby="provider-key-state" disabled={!admin} />
            </label>
            <p id="provider-key-state" class="muted" data-testid="provider-key-state">
              {current
                ? `Key set${current.keyHint ? ` · ends in ${current.keyHint.replace(/^…/, '')}` : ''}. Leave empty to keep it (a new base URL needs the key again).`
                : 'Required the first time.'}
            </p>
            <ErrorBox error={saveProvider.error ?? removeProvider.error} />
            {admin && (
              <div class="row">
                <button type="submit" disabled={saveProvider.busy}>
                  Save model
                </button>
                {current && (
                  <button type="button" class="secondary" disabled={removeProvider.busy} onClick={() => void removeProvider.run()}>
                    Use the platform’s model
                  </button>
                )}
              </div>
            )}
          </form>
        </>
      )}

      <h2>Daily quota</h2>
      <ErrorBox error={quota.error} />
      {!quota.data && quota.loading && <Loading what="the quota" />}
      {quota.data && (
        <form class="stack" aria-label="Daily quota" onSubmit={(e) => void saveQuota.run(formValues(e))}>
          <p class="muted" data-testid="quota-today">
            {quota.data.tokensToday} tokens used today of {quota.data.dailyTokenQuota}
            {quota.data.dailyTokenQuotaSource === 'operator-default' ? ' (the platform’s default)' : ''}.
          </p>
          <label>
            Tokens per day (empty: the platform’s default of {quota.data.operatorDefaultDailyTokenQuota})
            <input
              name="dailyTokenQuota"
              type="number"
              min={1}
              max={quota.data.operatorMaxDailyTokenQuota}
              step={1}
              defaultValue={quota.data.dailyTokenQuotaSource === 'org' ? String(quota.data.dailyTokenQuota) : ''}
              key={`q${quota.data.dailyTokenQuota}${quota.data.dailyTokenQuotaSource}`}
              disabled={!admin}
            />
          </label>
          <ErrorBox error={saveQuota.error} />
          {admin && (
            <button type="submit" disabled={saveQuota.busy}>
              Save quota
            </button>
          )}
        </form>
      )}
    </Page>
  );
}
