import { useEffect, useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { href } from '../state/route';
import { ErrorBox, formValues, Page, useAction } from '../ui';

export function NewOrg() {
  const create = useAction(async (values: Record<string, string>) => {
    const org = ok(await api.POST('/v1/orgs', { body: { name: values.name ?? '' } }));
    location.hash = href({ name: 'agents', orgId: org.id });
  });
  return (
    <Page title="New organization">
      <p>You become its owner and can invite your team.</p>
      <form class="stack" onSubmit={(e) => void create.run(formValues(e))}>
        <label>
          Name
          <input name="name" required maxLength={200} />
        </label>
        <ErrorBox error={create.error} />
        <button type="submit" disabled={create.busy}>
          Create organization
        </button>
      </form>
    </Page>
  );
}

/** An invite link (#/invite/<token>) accepted once signed in; then on to the org. */
export function AcceptInvite({ token }: { token: string }) {
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    api.POST('/v1/invites/accept', { body: { token } }).then(
      (result) => {
        try {
          const accepted = ok(result);
          location.replace(href({ name: 'agents', orgId: accepted.orgId }));
        } catch (err) {
          setError(err);
        }
      },
      (err: unknown) => setError(err),
    );
  }, [token]);
  return (
    <Page title="Joining the organization">
      {error ? <ErrorBox error={error} /> : <p role="status">Accepting the invite…</p>}
      {error ? <a href="#/">Go to your organizations</a> : null}
    </Page>
  );
}
