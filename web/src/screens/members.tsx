import { useState } from 'preact/hooks';
import { api, ok } from '../api/client';
import { ErrorBox, formatDate, formValues, Loading, Page, useAction, useLoad } from '../ui';

type Role = 'owner' | 'admin' | 'member';

/** Members and their roles; admins invite by email and get a link to send. */
export function Members({ orgId, admin }: { orgId: string; admin: boolean }) {
  const members = useLoad(async () => ok(await api.GET('/v1/orgs/{orgId}/members', { params: { path: { orgId }, query: { limit: 100 } } })).items, [orgId]);
  const invites = useLoad(
    async () => (admin ? ok(await api.GET('/v1/orgs/{orgId}/invites', { params: { path: { orgId }, query: { limit: 100 } } })).items : []),
    [orgId, admin],
  );
  const [link, setLink] = useState<string | null>(null);
  const invite = useAction(async (values: Record<string, string>) => {
    const created = ok(await api.POST('/v1/orgs/{orgId}/invites', { params: { path: { orgId } }, body: { email: values.email ?? '', role: (values.role ?? 'member') as 'admin' | 'member' } }));
    setLink(`${location.origin}/#/invite/${encodeURIComponent(created.token)}`);
    invites.reload();
  });
  const change = useAction(async (userId: string, role: Role) => {
    ok(await api.PATCH('/v1/orgs/{orgId}/members/{userId}', { params: { path: { orgId, userId } }, body: { role } }));
    members.reload();
  });
  const remove = useAction(async (userId: string) => {
    ok(await api.DELETE('/v1/orgs/{orgId}/members/{userId}', { params: { path: { orgId, userId } } }));
    members.reload();
  });
  const revoke = useAction(async (inviteId: string) => {
    ok(await api.DELETE('/v1/orgs/{orgId}/invites/{inviteId}', { params: { path: { orgId, inviteId } } }));
    invites.reload();
  });
  return (
    <Page title="Members">
      <ErrorBox error={members.error ?? change.error ?? remove.error} />
      {members.loading && <Loading what="members" />}
      <ul class="cards">
        {members.data?.map((m) => (
          <li key={m.userId} class="card">
            <p>
              <code>{m.userId}</code>
            </p>
            <p class="muted">Since {formatDate(m.createdAt)}</p>
            {admin ? (
              <div class="row">
                <label>
                  Role
                  <select value={m.role} onChange={(e) => void change.run(m.userId, (e.currentTarget as HTMLSelectElement).value as Role)}>
                    <option value="member">member</option>
                    <option value="admin">admin</option>
                    <option value="owner">owner</option>
                  </select>
                </label>
                <button type="button" class="danger" onClick={() => void remove.run(m.userId)}>
                  Remove
                </button>
              </div>
            ) : (
              <p>{m.role}</p>
            )}
          </li>
        ))}
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
