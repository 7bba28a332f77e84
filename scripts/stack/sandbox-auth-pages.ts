/**
 * The two pages the sandbox auth server shows a person, for what a real Supabase project has
 * outside Auth: the mailbox its magic links are "sent" to, and the stand-in OAuth provider's
 * consent page. Plain HTML with no script (a strict CSP goes with them) and no styles to load.
 */

/** One email the sandbox sent. */
export interface SandboxEmail {
  to: string;
  subject: string;
  type: 'magiclink';
  /** The link in the email (GoTrue's `{{ .ConfirmationURL }}`). */
  link: string;
  /** The 6-digit code in the same email (`{{ .Token }}`), for verifyOtp. */
  code: string;
  sentAt: string;
}

/** No script, no plugin, no framing: the pages are forms and links. */
export const PAGE_CSP = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'";

const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const page = (title: string, body: string) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;

export function mailboxPage(emails: SandboxEmail[], filter: string | null): string {
  const items = emails
    .slice()
    .reverse()
    .map(
      (m) => `<li>
<p><strong>${escape(m.subject)}</strong> to ${escape(m.to)}, ${escape(m.sentAt)}</p>
<p><a href="${escape(m.link)}">Sign in</a> or enter the code <code>${escape(m.code)}</code></p>
</li>`,
    )
    .join('\n');
  return page(
    'Sandbox mailbox',
    `<h1>Sandbox mailbox${filter ? ` of ${escape(filter)}` : ''}</h1>
<p>Emails the sandbox Supabase Auth "sent" (it sends none for real), newest first.</p>
${items ? `<ul>\n${items}\n</ul>` : '<p>No email yet.</p>'}`,
  );
}

const PROVIDER_NAMES: Record<string, string> = { github: 'GitHub', google: 'Google', azure: 'Microsoft', gitlab: 'GitLab', bitbucket: 'Bitbucket' };

export function consentPage(input: { provider: string; state: string; redirectUri: string; email: string }): string {
  const name = PROVIDER_NAMES[input.provider] ?? input.provider;
  return page(
    `Sandbox ${name}: sign in`,
    `<h1>Sign in with ${escape(name)} (sandbox)</h1>
<p>This page stands in for ${escape(name)}: the sandbox auth server plays the provider, and signs you in as the account you name.</p>
<form method="get" action="/sandbox/oauth/consent">
<input type="hidden" name="provider" value="${escape(input.provider)}">
<input type="hidden" name="state" value="${escape(input.state)}">
<input type="hidden" name="redirect_uri" value="${escape(input.redirectUri)}">
<p><label>${escape(name)} account email <input name="email" type="email" value="${escape(input.email)}" required></label></p>
<p><button type="submit" name="decision" value="allow">Authorize</button> <button type="submit" name="decision" value="deny" formnovalidate>Cancel</button></p>
</form>`,
  );
}
