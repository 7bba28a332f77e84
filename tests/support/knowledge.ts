import type pg from 'pg';
import { withPrincipal } from '../../lib/db.js';
import { prepareDocument, replaceDocumentChunks, type ChunkEmbeddings } from '../../activities/knowledge/store.js';

/**
 * A ready knowledge document with its chunks, for tests about search rather than ingestion: the
 * row as an operator (`admin`, superuser), the chunks the way the ingestion activity writes them
 * (`app` as the org's worker, so RLS applies).
 */
export async function seedKnowledge(
  pools: { admin: pg.Pool; app: pg.Pool },
  orgId: string,
  title: string,
  body: string,
  embed?: (passages: string[]) => ChunkEmbeddings,
): Promise<string> {
  const prepared = prepareDocument(body);
  const { rows } = await pools.admin.query<{ id: string }>(
    `insert into public.knowledge_documents (org_id, title, body, status, language, chunks_total, chunks_done, ingested_at)
     values ($1, $2, $3, 'ready', $4, $5, $5, now()) returning id`,
    [orgId, title, body, prepared.language, prepared.chunks.length],
  );
  const documentId = rows[0]!.id;
  await withPrincipal(pools.app, { kind: 'worker', orgId }, (tx) =>
    replaceDocumentChunks(tx, { orgId, documentId, revision: 1, title }, prepared, embed?.(prepared.chunks.map((c) => c.passage))),
  );
  return documentId;
}
