import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { ErrorBox, formatDate, formValues, Loading, Page, useAction, useLoad } from '../ui';

/** Knowledge documents the agents search (knowledge_search), with full-text filtering. */
export function Knowledge({ orgId, admin }: { orgId: string; admin: boolean }) {
  const [q, setQ] = useState('');
  const docs = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/knowledge', { params: { path: { orgId }, query: { limit: 50, ...(q ? { q } : {}) } } })).items, [orgId, q]);
  const add = useAction(async (values: Record<string, string>) => {
    ok(await api.POST('/v1/orgs/{orgId}/knowledge', { params: { path: { orgId } }, body: { title: values.title ?? '', body: values.body ?? '' } }));
    docs.reload();
  });
  const remove = useAction(async (documentId: string) => {
    ok(await api.DELETE('/v1/orgs/{orgId}/knowledge/{documentId}', { params: { path: { orgId, documentId } } }));
    docs.reload();
  });
  return (
    <Page title="Knowledge">
      <form role="search" class="row" onSubmit={(e) => setQ(formValues(e).q ?? '')}>
        <label>
          Search documents
          <input name="q" type="search" />
        </label>
        <button type="submit">Search</button>
      </form>
      <ErrorBox error={docs.error ?? remove.error} />
      {docs.loading && <Loading what="documents" />}
      <ul class="cards">
        {docs.data?.map((d) => (
          <li key={d.id} class="card">
            <h2>{d.title}</h2>
            <p class="clamp">{d.body}</p>
            <p class="muted">Updated {formatDate(d.updatedAt)}</p>
            {admin && (
              <button type="button" class="danger" onClick={() => void remove.run(d.id)}>
                Delete
              </button>
            )}
          </li>
        ))}
      </ul>
      {admin && (
        <>
          <h2>Add a document</h2>
          <form class="stack" onSubmit={(e) => {
            const values = formValues(e);
            const form = e.currentTarget as HTMLFormElement;
            void add.run(values).then(() => form.reset());
          }}>
            <label>
              Title
              <input name="title" required maxLength={500} />
            </label>
            <label>
              Text
              <textarea name="body" rows={6} />
            </label>
            <ErrorBox error={add.error} />
            <button type="submit" disabled={add.busy}>
              Add document
            </button>
          </form>
        </>
      )}
    </Page>
  );
}
