import type pg from 'pg';
import { withPrincipal } from '../../lib/db.js';
import type { Principal } from '../../lib/principal.js';
import { decodeCursor, toPage } from '../pagination.js';
import { notFound } from '../problems.js';
import { requireOrgRole } from './org-access.js';

export interface KnowledgeDocument {
  id: string;
  orgId: string;
  title: string;
  body: string;
  createdAt: string;
  updatedAt: string;
}

interface Row {
  id: string;
  org_id: string;
  title: string;
  body: string;
  created_at: Date;
  updated_at: Date;
}

const columns = 'id, org_id, title, body, created_at, updated_at';

const toView = (r: Row): KnowledgeDocument => ({
  id: r.id,
  orgId: r.org_id,
  title: r.title,
  body: r.body,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

/** The org's knowledge documents, searched by agents through the knowledge_search tool. Admins write, members read. */
export function createKnowledgeService(deps: { pool: pg.Pool }) {
  const { pool } = deps;
  return {
    async create(principal: Principal, orgId: string, doc: { title: string; body: string }): Promise<KnowledgeDocument> {
      return withPrincipal(pool, principal, async (tx) => {
        await requireOrgRole(tx, orgId, 'admin');
        const { rows } = await tx.query<Row>(
          `insert into public.knowledge_documents (org_id, title, body, created_by) values ($1, $2, $3, (select auth.uid())) returning ${columns}`,
          [orgId, doc.title, doc.body],
        );
        return toView(rows[0]!);
      });
    },
    async get(principal: Principal, orgId: string, id: string): Promise<KnowledgeDocument> {
      return withPrincipal(pool, principal, async (tx) => {
        const { rows } = await tx.query<Row>(`select ${columns} from public.knowledge_documents where id = $1 and org_id = $2`, [id, orgId]);
        if (!rows[0]) throw notFound('Knowledge document');
        return toView(rows[0]);
      });
    },
    async list(principal: Principal, orgId: string, query: { q?: string | undefined; limit: number; cursor?: string | undefined }) {
      const after = decodeCursor(query.cursor);
      return withPrincipal(pool, principal, async (tx) => {
        await requireOrgRole(tx, orgId, 'member');
        const { rows } = await tx.query<Row>(
          `select ${columns} from public.knowledge_documents
            where org_id = $1
              and ($2::text is null or search @@ websearch_to_tsquery('simple', $2))
              and ($3::timestamptz is null or (created_at, id) < ($3::timestamptz, $4::uuid))
            order by created_at desc, id desc limit $5`,
          [orgId, query.q ?? null, after?.createdAt ?? null, after?.id ?? null, query.limit + 1],
        );
        return toPage(rows, query.limit, toView);
      });
    },
    async update(principal: Principal, orgId: string, id: string, patch: { title?: string | undefined; body?: string | undefined }) {
      return withPrincipal(pool, principal, async (tx) => {
        await requireOrgRole(tx, orgId, 'admin');
        const { rows } = await tx.query<Row>(
          `update public.knowledge_documents set title = coalesce($3, title), body = coalesce($4, body)
            where id = $1 and org_id = $2 returning ${columns}`,
          [id, orgId, patch.title ?? null, patch.body ?? null],
        );
        if (!rows[0]) throw notFound('Knowledge document');
        return toView(rows[0]);
      });
    },
    async remove(principal: Principal, orgId: string, id: string): Promise<void> {
      await withPrincipal(pool, principal, async (tx) => {
        await requireOrgRole(tx, orgId, 'admin');
        const deleted = await tx.query(`delete from public.knowledge_documents where id = $1 and org_id = $2`, [id, orgId]);
        if (deleted.rowCount !== 1) throw notFound('Knowledge document');
      });
    },
  };
}

export type KnowledgeService = ReturnType<typeof createKnowledgeService>;
