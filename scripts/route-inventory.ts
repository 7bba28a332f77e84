/**
 * Writes api/route-inventory.json from the routes' own declarations (`npm run routes:inventory`).
 * The app is built with every optional part on (CRM, console) but connects to nothing: the
 * pool and the Temporal connection are lazy and never used, since only the route table is read.
 * `--check` exits 1 when the committed file differs, for CI or a pre-commit hook.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { buildApp } from '../api/app.js';
import { formatRouteInventory } from '../api/route-access.js';
import { crmSettingsFromConfig } from '../integrations/crm/settings.js';
import { generateKeySpec, parseKeyring } from '../lib/crypto.js';
import { createLogger } from '../lib/logger.js';

const target = fileURLToPath(new URL('../api/route-inventory.json', import.meta.url));

async function main(): Promise<void> {
  const pool = new pg.Pool({ connectionString: 'postgres://unused@127.0.0.1:1/unused' });
  const connection = Connection.lazy({ address: '127.0.0.1:1' });
  const app = await buildApp({
    pool,
    temporal: new Client({ connection }),
    logger: createLogger({ name: 'route-inventory', level: 'silent' }),
    auth: { jwtSecret: 'route-inventory-only-never-verifies-anything' },
    crm: {
      keyring: parseKeyring(generateKeySpec('inventory')),
      settings: crmSettingsFromConfig({
        CRM_HTTP_TIMEOUT_MS: 1000,
        KOMMO_AUTHORIZE_URL: 'https://www.kommo.com/oauth',
        HUBSPOT_AUTHORIZE_URL: 'https://app.hubspot.com/oauth/authorize',
        HUBSPOT_API_BASE_URL: 'https://api.hubapi.com',
      }),
    },
    console: { dir: fileURLToPath(new URL('../web/dist', import.meta.url)) },
  });
  await app.ready();
  const text = formatRouteInventory(app.routeInventory());
  await app.close();
  await connection.close().catch(() => {});
  await pool.end();

  if (process.argv.includes('--check')) {
    if (readFileSync(target, 'utf8') !== text) {
      console.error('api/route-inventory.json is out of date: run npm run routes:inventory');
      process.exitCode = 1;
    }
    return;
  }
  writeFileSync(target, text);
  console.log(`wrote ${app.routeInventory().length} routes to api/route-inventory.json`);
}

await main();
