import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { currentSession } from '../auth';
import { ErrorBox, formatDate, formValues, Loading, Page, useAction, useLoad } from '../ui';

type Role = 'owner' | 'admin' | 'member';

/** Members and their roles; admins invite by email and get a link to send. */
export function Members({ orgId, admin }: { orgId: string; admin: boolean }) {
  const members = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/members', { params: { path: { orgId }, query: { limit: 100 } } })).items, [orgId]);
  const invites = useLoad(
    async () => (admin ? ok(await api.GET('/v1/orgs/{orgId}/invites', { params: { path: { orgId }, query: { limit: 100 } } })).items : []),
    [orgId, admin],
  );
  const me = useLoad(async () => (await currentSession())?.user.id ?? null, []);
  const [link, setLink] = useState<string | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [removing, setRemoving] = useState<string | null>(null);
  const invite = useAction(async (values: Record<string, string>) => {
    const created = ok(await api.POST('/v1/orgs/{orgId}/invites', { params: { path: { orgId } }, body: { email: values.email ?? '', role: (values.role ?? 'member') as 'admin' | 'member' } }));
    setLink(`${location.origin}/#/invite/${encodeURIComponent(created.token)}`);
    invites.reload();
  });
  const change = useAction(async (userId: string, role: Role) => {
    setSaved(null);
    try {
      ok(await api.PATCH('/v1/orgs/{orgId}/members/{userId}', { params: { path: { orgId, userId } }, body: { role } }));
      setSaved(`Role changed to ${role}.`);
    } finally {
      // Refused changes too: the select shows the role the member really has.
      members.reload();
    }
  });
  const remove = useAction(async (userId: string) => {
    setSaved(null);
    ok(await api.DELETE('/v1/orgs/{orgId}/members/{userId}', { params: { path: { orgId, userId } } }));
    setRemoving(null);
    setSaved('Member removed.');
    members.reload();
  });
  const revoke = useAction(async (inviteId: string) => {
    ok(await api.DELETE('/v1/orgs/{orgId}/invites/{inviteId}', { params: { path: { orgId, inviteId } } }));
    invites.reload();
  });
  return (
    <Page title="Members">
      <ErrorBox error={members.error ?? change.error ?? remove.error} />
      {saved && <p role="status">{saved}</p>}
      {!members.data && members.loading && <Loading what="members" />}
      <ul class="cards">
        {members.data?.map((m) => {
          // The email is recorded when the member founds the org or accepts an invite; memberships
          // added otherwise have none, and show a short user id instead.
          const name = m.email ?? `User ${m.userId.slice(0, 8)}`;
          return (
            <li key={m.userId} class="card" aria-label={`Member ${m.userId}`}>
              <h2>{m.userId === me.data ? `${name} (you)` : name}</h2>
              <p class="muted">
                <code>{m.userId}</code> · member since {formatDate(m.createdAt)}
              </p>
              {admin ? (
                <div class="row">
                  <label>
                    Role
                    <select value={m.role} disabled={change.busy} onChange={(e) => void change.run(m.userId, (e.currentTarget as HTMLSelectElement).value as Role)}>
                      <option value="member">member</option>
                      <option value="admin">admin</option>
                      <option value="owner">owner</option>
                    </select>
                  </label>
                  {removing === m.userId ? (
                    <>
                      <button type="button" class="danger" disabled={remove.busy} onClick={() => void remove.run(m.userId)}>
                        {m.userId === me.data ? 'Leave the organization' : 'Confirm removal'}
                      </button>
                      <button type="button" class="secondary" onClick={() => setRemoving(null)}>
                        Cancel
                      </button>
                    </>
                  ) : (
                    <button type="button" class="danger" onClick={() => setRemoving(m.userId)}>
                      Remove
                    </button>
                  )}
                </div>
              ) : (
                <p>{m.role}</p>
              )}
            </li>
          );
        })}
      </ul>
      {admin && (
        <>
          <h2>Invite someone</h2>
          <form class="stack" onSubmit={(e) => void invite.run(formValues(e))}>
            <label>
              Email
              <input name="email" type="email" required />
            </label>
            <label>
              Role
              <select name="role">
                <option value="member">member</option>
                <option value="admin">admin</option>
              </select>
            </label>
            <ErrorBox error={invite.error} />
            <button type="submit" disabled={invite.busy}>
              Create invite link
            </button>
          </form>
          {link && (
            <div class="notice" role="status">
              <p>Send this link to the invitee (shown once). They sign in with that email address and join.</p>
              <input readOnly value={link} aria-label="Invite link" data-testid="invite-link" onFocus={(e) => (e.currentTarget as HTMLInputElement).select()} />
            </div>
          )}
          <h2>Invites</h2>
          <ErrorBox error={invites.error ?? revoke.error} />
          <ul class="cards">
            {invites.data?.map((i) => (
              <li key={i.id} class="card">
                <p>
                  {i.email} · {i.role} · {i.status}
                </p>
                <p class="muted">Expires {formatDate(i.expiresAt)}</p>
                {i.status === 'pending' && (
                  <button type="button" class="secondary" onClick={() => void revoke.run(i.id)}>
                    Revoke
                  </button>
                )}
              </li>
            ))}
          </ul>
        </>
      )}
    </Page>
  );
}
