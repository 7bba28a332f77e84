import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../../lib/migrate.js';

/**
 * Migrates a local database and lets the application log in as `authenticator`, the role the
 * API and workers use (never the owner or a superuser, which would bypass RLS). On Supabase the
 * platform owns that role's password; locally we set a fresh random one on every start.
 */
export async function prepareAppDatabase(adminUrl: string, log: (msg: string) => void = () => {}): Promise<{ appUrl: string }> {
  const { applied } = await migrate(adminUrl, { log });
  if (applied.length > 0) log(`applied migrations: ${applied.join(', ')}`);

  const password = randomBytes(18).toString('base64url');
  await setAuthenticatorPassword(adminUrl, password);
  const appUrl = new URL(adminUrl);
  appUrl.username = 'authenticator';
  appUrl.password = password;
  return { appUrl: appUrl.toString() };
}

/** Lets `authenticator` log in with `password` (ALTER ROLE takes no parameters, hence the escaping). */
export async function setAuthenticatorPassword(adminUrl: string, password: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`alter role authenticator with login password ${client.escapeLiteral(password)}`);
  } finally {
    await client.end();
  }
}
