import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPortFree } from '../../scripts/stack/ports.js';
import { createDatabase, dropDatabase, startPostgres } from '../../scripts/stack/postgres.js';
import { ensureTemporalCli } from '../../scripts/stack/temporal-cli.js';
import { isTemporalPortFree, startTemporalDevServer } from '../../scripts/stack/temporal-server.js';

// On a fresh machine the first call builds the Temporal CLI with Go (about 6 minutes on 2 cores).
const CLI_BUILD_TIMEOUT_MS = 20 * 60_000;
const SERVICE_TIMEOUT_MS = 180_000;

async function drain<T>(items: AsyncIterable<T>): Promise<T[]> {
  const collected: T[] = [];
  for await (const item of items) collected.push(item);
  return collected;
}

async function queryRows(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows as Record<string, unknown>[];
  } finally {
    await client.end();
  }
}

describe('Temporal dev server started from the CLI', () => {
  let cliPath: string;

  beforeAll(async () => {
    cliPath = await ensureTemporalCli((msg) => console.log(msg));
  }, CLI_BUILD_TIMEOUT_MS);

  it(
    'accepts list queries on the search attributes it was started with, and frees its port when stopped',
    async () => {
      const server = await startTemporalDevServer({ cliPath, searchAttributes: { OrgId: 'Keyword' } });
      try {
        const connection = await Connection.connect({ address: server.address });
        try {
          const client = new Client({ connection, namespace: server.namespace });
          expect(await drain(client.workflow.list({ query: 'OrgId = "x"' }))).toEqual([]);
          // The control: an attribute nobody registered is rejected, so the query above proves registration.
          const rejection = (await drain(client.workflow.list({ query: 'NotRegistered = "x"' })).catch((error: unknown) => error)) as Error;
          expect(rejection).toBeInstanceOf(Error);
          expect(String((rejection.cause as Error | undefined)?.message)).toMatch(/NotRegistered/);
        } finally {
          await connection.close();
        }
      } finally {
        await server.stop();
      }
      expect(await isTemporalPortFree(server)).toBe(true);
    },
    SERVICE_TIMEOUT_MS,
  );
});

describe('Temporal dev server start-up retries', () => {
  it(
    'starts again on fresh ports when the server dies during start-up, and reports the cause when it keeps dying',
    async () => {
      const cliPath = await ensureTemporalCli((msg) => console.log(msg));
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gap-temporal-retry-'));
      try {
        // Dies like the CI failure did (a panic, exit 2) on the first start only, then is the real CLI.
        const marker = path.join(dir, 'died-once');
        const flaky = path.join(dir, 'temporal-flaky');
        await fs.writeFile(
          flaky,
          `#!/bin/sh\nif [ ! -e '${marker}' ]; then touch '${marker}'; echo 'panic: runtime error: invalid memory address or nil pointer dereference' >&2; exit 2; fi\nexec '${cliPath}' "$@"\n`,
          { mode: 0o755 },
        );
        const server = await startTemporalDevServer({ cliPath: flaky, searchAttributes: { OrgId: 'Keyword' } });
        await server.stop();
        await expect(fs.stat(marker)).resolves.toBeDefined();

        const broken = path.join(dir, 'temporal-broken');
        await fs.writeFile(broken, `#!/bin/sh\necho 'panic: always broken' >&2\nexit 2\n`, { mode: 0o755 });
        await expect(startTemporalDevServer({ cliPath: broken, searchAttributes: {} })).rejects.toThrow(/exited with code 2[\s\S]*panic: always broken/);
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
    },
    SERVICE_TIMEOUT_MS,
  );
});

describe('embedded Postgres', () => {
  let stateDir: string;
  const savedDatabaseUrl = process.env.DATABASE_URL;

  beforeAll(async () => {
    delete process.env.DATABASE_URL;
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stack-test-'));
    // mkdtemp makes a 0700 folder; when running as root the server's postgres user must enter it.
    await fs.chmod(stateDir, 0o755);
  });

  afterAll(async () => {
    if (savedDatabaseUrl !== undefined) process.env.DATABASE_URL = savedDatabaseUrl;
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  it(
    'runs a real server, creates and drops databases, and keeps its data across restarts',
    async () => {
      const dataDir = path.join(stateDir, 'postgres');
      const first = await startPostgres({ dataDir, port: 0 });
      const port = Number(new URL(first.adminUrl).port);
      try {
        expect(first.embedded).toBe(true);
        const [version] = await queryRows(first.adminUrl, 'select version() as version');
        expect(String(version?.version)).toMatch(/^PostgreSQL \d+/);

        const url = await createDatabase(first.adminUrl, 'stack_test_db', { dropIfExists: true });
        expect(new URL(url).pathname).toBe('/stack_test_db');
        await queryRows(url, 'create table kept (note text); insert into kept values ($$survives a restart$$)');
        const listed = await queryRows(first.adminUrl, "select 1 from pg_database where datname = 'stack_test_db'");
        expect(listed).toHaveLength(1);
      } finally {
        await first.stop();
      }
      expect(await isPortFree('127.0.0.1', port)).toBe(true);

      const second = await startPostgres({ dataDir, port: 0 });
      try {
        // Without dropIfExists an existing database is kept, as a persistent dev cluster needs.
        const url = await createDatabase(second.adminUrl, 'stack_test_db');
        expect(await queryRows(url, 'select note from kept')).toEqual([{ note: 'survives a restart' }]);

        await dropDatabase(second.adminUrl, 'stack_test_db');
        const listed = await queryRows(second.adminUrl, "select 1 from pg_database where datname = 'stack_test_db'");
        expect(listed).toHaveLength(0);
      } finally {
        await second.stop();
      }
    },
    SERVICE_TIMEOUT_MS,
  );

  it('uses DATABASE_URL instead of starting a server when it is set', async () => {
    // The suite's own server stands in for an external one (any machine has it).
    const external = process.env.TEST_DATABASE_ADMIN_URL!;
    expect(external).toBeTruthy();
    const previous = process.env.DATABASE_URL;
    process.env.DATABASE_URL = external;
    try {
      const handle = await startPostgres({ dataDir: path.join(stateDir, 'unused') });
      expect(handle).toMatchObject({ adminUrl: external, embedded: false });
      await handle.stop();
      await expect(fs.access(path.join(stateDir, 'unused'))).rejects.toThrow();
    } finally {
      if (previous === undefined) delete process.env.DATABASE_URL;
      else process.env.DATABASE_URL = previous;
    }
  });
});
