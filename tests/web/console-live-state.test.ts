/** The console's follow-while-running logic (web/src/state/live.ts), without a browser. */
import { describe, expect, it } from 'vitest';
import { describeIngestion, describeSync, ingesting, LIVE_POLL_MS, nextPoll, syncPoll, syncRunning, type SyncRunView } from '../../web/src/state/live.js';

const counts = { added: 3, updated: 1, deleted: 0, failed: 0, pages: 2 };
const run = (over: Partial<SyncRunView> = {}): SyncRunView => ({ status: 'completed', mode: 'incremental', counts, progress: {}, error: null, ...over });

describe('polling while work runs', () => {
  it('looks again only while something shown is still running, and stops when nothing is', () => {
    expect(nextPoll(undefined, syncRunning)).toBeNull();
    expect(nextPoll([], syncRunning)).toBeNull();
    expect(nextPoll([{ status: 'completed' }, { status: 'failed' }], syncRunning)).toBeNull();
    expect(nextPoll([{ status: 'completed' }, { status: 'running' }], syncRunning)).toBe(LIVE_POLL_MS);
    expect(nextPoll([{ status: 'ready' }, { status: 'processing' }], ingesting, 900)).toBe(900);
    expect(nextPoll([{ status: 'pending' }], ingesting)).toBe(LIVE_POLL_MS);
    expect(nextPoll([{ status: 'ready' }, { status: 'failed' }], ingesting)).toBeNull();
  });

  it('after "Sync now" keeps looking until a run newer than the one on top appears, then follows it, and gives up after a while', () => {
    const since = 1_000_000;
    const pending = { after: 'old', since };
    expect(syncPoll([{ id: 'old', status: 'completed' }], pending, since + 100)).toBe(LIVE_POLL_MS);
    expect(syncPoll([{ id: 'new', status: 'running' }, { id: 'old', status: 'completed' }], pending, since + 2000)).toBe(LIVE_POLL_MS);
    expect(syncPoll([{ id: 'new', status: 'completed' }, { id: 'old', status: 'completed' }], pending, since + 4000)).toBeNull();
    // The first sync of a connection: nothing was on top.
    expect(syncPoll([], { after: null, since }, since + 100)).toBe(LIVE_POLL_MS);
    expect(syncPoll([{ id: 'first', status: 'completed' }], { after: null, since }, since + 100)).toBeNull();
    // The workflow never wrote its row (a worker down): stop after the give-up time.
    expect(syncPoll([{ id: 'old', status: 'completed' }], pending, since + 30_001)).toBeNull();
    expect(syncPoll([{ id: 'old', status: 'completed' }], null, since)).toBeNull();
  });
});

describe('what the screens say', () => {
  it('describes a running sync by the object type it pages and the records read so far', () => {
    expect(describeSync(run({ status: 'running', progress: { objectType: 'deals', phase: 'list', seen: { owners: 2, deals: 100 } } }))).toBe(
      'Syncing deals: 102 records read so far (3 added, 1 updated, 0 deleted, 2 pages)',
    );
    expect(describeSync(run({ status: 'running', progress: {}, counts: { ...counts, added: 0, pages: 1 } }))).toBe('Syncing: 0 records read so far (0 added, 1 updated, 0 deleted, 1 page)');
  });

  it('describes a finished sync by its counts, and a failed one by its reason', () => {
    expect(describeSync(run())).toBe('Done: 3 added, 1 updated, 0 deleted, 2 pages');
    expect(describeSync(run({ counts: { ...counts, failed: 2 } }))).toBe('Done: 3 added, 1 updated, 0 deleted, 2 failed, 2 pages');
    expect(describeSync(run({ status: 'failed', error: { type: 'auth', message: 'the token was revoked' } }))).toBe('Failed: the token was revoked (3 added, 1 updated, 0 deleted, 2 pages)');
  });

  it("describes a document's ingestion, with the failure's reason", () => {
    expect(describeIngestion({ status: 'pending', failureReason: null, progress: { chunksTotal: null, chunksDone: 0 } })).toBe('Waiting to be read');
    expect(describeIngestion({ status: 'processing', failureReason: null, progress: { chunksTotal: null, chunksDone: 0 } })).toBe('Reading the document');
    expect(describeIngestion({ status: 'processing', failureReason: null, progress: { chunksTotal: 8, chunksDone: 3 } })).toBe('Indexing: 3 of 8 parts');
    expect(describeIngestion({ status: 'ready', failureReason: null, progress: { chunksTotal: 1, chunksDone: 1 } })).toBe('Ready: 1 part searchable');
    expect(describeIngestion({ status: 'failed', failureReason: 'The page answered 404.', progress: { chunksTotal: null, chunksDone: 0 } })).toBe('Failed: The page answered 404.');
    expect(describeIngestion({ status: 'failed', failureReason: null, progress: { chunksTotal: null, chunksDone: 0 } })).toBe('Failed: no reason given');
  });
});
