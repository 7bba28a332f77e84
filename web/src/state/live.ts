/**
 * What the CRM and knowledge screens show while work runs in the background, and when they look
 * again. Both follow by polling the list they already show: a sync writes its counters and
 * progress to its row after every CRM page, and an ingestion its status and chunk counts, but
 * neither is on the org's SSE feed (that carries approvals, handoffs and failures). Polling
 * stops as soon as nothing runs, so an idle screen makes no requests.
 */

/** How often a screen looks again while something it shows is still running. */
export const LIVE_POLL_MS = 1500;

/** The delay before the next look, or null when nothing shown is still running. */
export function nextPoll<T>(items: readonly T[] | undefined, running: (item: T) => boolean, every = LIVE_POLL_MS): number | null {
  return items?.some(running) ? every : null;
}

export interface SyncRunView {
  status: 'running' | 'completed' | 'failed';
  mode: string;
  counts: { added: number; updated: number; deleted: number; failed: number; pages: number };
  progress: Record<string, unknown>;
  error: { type: string; message: string } | null;
}

export const syncRunning = (s: { status: string }) => s.status === 'running';

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/**
 * One line a sales manager can read: what a running sync is doing now (the object type it
 * pages through and the records seen so far), or what a finished one did and why it failed.
 */
export function describeSync(s: SyncRunView): string {
  const c = s.counts;
  const done = `${plural(c.added, 'added', 'added')}, ${c.updated} updated, ${c.deleted} deleted${c.failed > 0 ? `, ${c.failed} failed` : ''}, ${plural(c.pages, 'page')}`;
  if (s.status === 'running') {
    const objectType = typeof s.progress.objectType === 'string' ? s.progress.objectType : null;
    const seen = s.progress.seen && typeof s.progress.seen === 'object' ? Object.values(s.progress.seen as Record<string, unknown>).reduce<number>((n, v) => n + (typeof v === 'number' ? v : 0), 0) : 0;
    return `Syncing${objectType ? ` ${objectType}` : ''}: ${plural(seen, 'record')} read so far (${done})`;
  }
  if (s.status === 'failed') return `Failed: ${s.error?.message ?? 'unknown error'} (${done})`;
  return `Done: ${done}`;
}

export interface KnowledgeDocView {
  status: 'pending' | 'processing' | 'ready' | 'failed';
  failureReason: string | null;
  progress: { chunksTotal: number | null; chunksDone: number };
}

export const ingesting = (d: { status: string }) => d.status === 'pending' || d.status === 'processing';

/** The document's ingestion state in words, with the reason when it failed. */
export function describeIngestion(d: KnowledgeDocView): string {
  switch (d.status) {
    case 'pending':
      return 'Waiting to be read';
    case 'processing':
      return d.progress.chunksTotal ? `Indexing: ${d.progress.chunksDone} of ${d.progress.chunksTotal} parts` : 'Reading the document';
    case 'ready':
      return d.progress.chunksTotal !== null ? `Ready: ${plural(d.progress.chunksTotal, 'part')} searchable` : 'Ready';
    case 'failed':
      return `Failed: ${d.failureReason ?? 'no reason given'}`;
  }
}

/**
 * "Sync now" starts a workflow that writes its run row a moment later: the history keeps
 * looking while a sync runs, and after a start until a run newer than `pending.after` (the newest
 * run when the button was pressed) shows up, giving up after `giveUpMs`.
 */
export function syncPoll(
  items: ReadonlyArray<{ id: string; status: string }> | undefined,
  pending: { after: string | null; since: number } | null,
  now: number,
  giveUpMs = 30_000,
): number | null {
  if (items?.some(syncRunning)) return LIVE_POLL_MS;
  if (pending && now - pending.since < giveUpMs && (items?.[0]?.id ?? null) === pending.after) return LIVE_POLL_MS;
  return null;
}
