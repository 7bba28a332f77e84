import { loadMigrationLockConfig, migrationLockOptions } from '../lib/config.js';
import { migrate } from '../lib/migrate.js';

// Migrations need a role that owns the schema (a superuser on plain Postgres, `postgres` on
// Supabase), not the application's authenticator: hence a separate variable.
const url = process.env.DATABASE_MIGRATION_URL || process.env.DATABASE_URL;
if (!url) {
  console.error('Set DATABASE_MIGRATION_URL (or DATABASE_URL) to the postgres:// URL of a role that owns the schema.');
  process.exit(2);
}

try {
  const { applied } = await migrate(url, { log: (message) => console.log(message), ...migrationLockOptions(loadMigrationLockConfig()) });
  console.log(applied.length === 0 ? 'Nothing to apply.' : `Applied ${applied.length} migration(s): ${applied.join(', ')}`);
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
}
