import { describe, expect, it } from 'vitest';
import { databaseNamedIn } from '../../scripts/stack/postgres.js';

// Issue 12, item 8: `npm run dev` with DATABASE_URL naming a database uses that database, so
// checkouts sharing one server (each with its own Temporal state) never share run rows.
describe('the database DATABASE_URL names', () => {
  it('is the path of the URL', () => {
    expect(databaseNamedIn('postgres://u:p@127.0.0.1:5432/checkout_two')).toBe('checkout_two');
    expect(databaseNamedIn('postgres://u:p@127.0.0.1:5432/with%20space?sslmode=disable')).toBe('with space');
  });

  it('is none when the URL has no path', () => {
    expect(databaseNamedIn('postgres://u:p@127.0.0.1:5432')).toBeUndefined();
    expect(databaseNamedIn('postgres://u:p@127.0.0.1:5432/')).toBeUndefined();
  });
});
