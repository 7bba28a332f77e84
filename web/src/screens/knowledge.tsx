import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { describeIngestion, ingesting, nextPoll } from '../state/live';
import { ErrorBox, formatDate, formValues, Loading, Page, StatusBadge, useAction, useLoad, usePoll } from '../ui';

type Source = 'text' | 'file' | 'url';

/** Knowledge documents the agents search (knowledge_search): add text, a file or a web page; follow ingestion. */
export function Knowledge({ orgId, admin }: { orgId: string; admin: boolean }) {
  const [q, setQ] = useState('');
  const [source, setSource] = useState<Source>('text');
  const docs = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/knowledge', { params: { path: { orgId }, query: { limit: 50, ...(q ? { q } : {}) } } })).items, [orgId, q]);
  // Ingestion runs in a workflow: the list is followed until every document is ready or failed.
  usePoll(nextPoll(docs.data, ingesting), docs.reload, docs.data);
  const add = useAction(async (form: HTMLFormElement) => {
    const values = Object.fromEntries([...new FormData(form).entries()].filter(([, v]) => typeof v === 'string').map(([k, v]) => [k, String(v)]));
    const path = { path: { orgId } };
    if (source === 'file') {
      // The upload is multipart (the OpenAPI document types the JSON forms only); fetch sets the boundary.
      const upload = new FormData();
      if (values.title) upload.set('title', values.title);
      const file = (form.elements.namedItem('file') as HTMLInputElement).files?.[0];
      if (file) upload.set('file', file, file.name);
      ok(await api.POST('/v1/orgs/{orgId}/knowledge', { params: path, body: upload as never }));
    } else if (source === 'url') {
      ok(await api.POST('/v1/orgs/{orgId}/knowledge', { params: path, body: { url: values.url ?? '', ...(values.title ? { title: values.title } : {}) } }));
    } else {
      ok(await api.POST('/v1/orgs/{orgId}/knowledge', { params: path, body: { title: values.title ?? '', body: values.body ?? '' } }));
    }
    form.reset();
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
      {!docs.data && docs.loading && <Loading what="documents" />}
      {docs.data?.length === 0 && <p>{q ? 'No document matches.' : 'No documents yet: agents answer from what you add here.'}</p>}
      <ul class="cards" aria-live="polite">
        {docs.data?.map((d) => (
          <li key={d.id} class="card" aria-label={`Document ${d.title}`}>
            <h2>{d.title}</h2>
            <p>
              <StatusBadge status={d.status} /> <span class={d.status === 'failed' ? 'error-text' : undefined}>{describeIngestion(d)}</span>
            </p>
            <p class="muted">
              {d.source.kind === 'url' && d.source.url ? `From ${d.source.url}` : d.source.kind === 'file' ? `File ${d.source.fileName ?? ''}` : 'Text'}
              {d.pageCount ? `, ${d.pageCount} pages` : ''} · updated {formatDate(d.updatedAt)}
            </p>
            {d.body && <p class="clamp">{d.body}</p>}
            {admin && (
              <button type="button" class="danger" aria-label={`Delete ${d.title}`} disabled={remove.busy} onClick={() => void remove.run(d.id)}>
                Delete
              </button>
            )}
          </li>
        ))}
      </ul>
      {admin && (
        <>
          <h2>Add a document</h2>
          <form
            class="stack"
            aria-label="Add a document"
            onSubmit={(e) => {
              e.preventDefault();
              void add.run(e.currentTarget as HTMLFormElement);
            }}
          >
            <fieldset class="row">
              <legend>Source</legend>
              {(
                [
                  ['text', 'Text'],
                  ['file', 'File (PDF, DOCX, HTML, Markdown, text)'],
                  ['url', 'Web page'],
                ] as const
              ).map(([value, label]) => (
                <label key={value} class="inline">
                  <input type="radio" name="source" value={value} checked={source === value} onChange={() => setSource(value)} /> {label}
                </label>
              ))}
            </fieldset>
            <label>
              Title{source === 'text' ? '' : ' (optional)'}
              <input name="title" required={source === 'text'} maxLength={500} />
            </label>
            {source === 'text' && (
              <label>
                Text
                <textarea name="body" rows={6} />
              </label>
            )}
            {source === 'file' && (
              <label>
                File
                <input name="file" type="file" required accept=".pdf,.docx,.html,.htm,.md,.markdown,.txt,application/pdf,text/html,text/markdown,text/plain" />
              </label>
            )}
            {source === 'url' && (
              <label>
                Address
                <input name="url" type="url" required placeholder="https://example.com/pricing" />
              </label>
            )}
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
