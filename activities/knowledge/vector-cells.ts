/**
 * The org's vector cells (migration 20261210300200_knowledge_vector_cells.sql): an inverted file
 * over the chunks' binary sketches, so that fused search reads the chunks of the 16 cells nearest
 * the query instead of every embedded chunk of the org. Ingestion calls this after it stored a
 * document's chunks: the first time the org has 5,000 chunks of the model, 256 pivots are drawn;
 * chunks written before that (or before this migration) get their cell here, in batches, each a
 * transaction of its own. Chunks written after the draw take their cell as they are inserted.
 * Safe to repeat and to run twice at once (the draw serialises per org and model; assignment
 * skips rows another transaction holds).
 */
import type pg from 'pg';
import { withPrincipal } from '../../lib/db.js';

/** Chunks given a cell per transaction: ~0.7 ms each at 256 cells, well inside the statement timeout. */
export const CELL_ASSIGNMENT_BATCH = 2_000;

export interface VectorCellsOutcome {
  /** Cells the org has for the model (0: fewer than 5,000 chunks of it so far). */
  cells: number;
  /** Chunks given a cell by this call. */
  assigned: number;
}

export async function indexVectorCells(pool: pg.Pool, orgId: string, model: string, onBatch: () => void = () => undefined): Promise<VectorCellsOutcome> {
  const worker = { kind: 'worker', orgId } as const;
  const cells = await withPrincipal(pool, worker, (tx) =>
    tx.query<{ cells: number }>(`select private.knowledge_draw_vector_cells($1, $2) as cells`, [orgId, model]).then((r) => r.rows[0]!.cells),
  );
  let assigned = 0;
  if (cells === 0) return { cells, assigned };
  for (;;) {
    const n = await withPrincipal(pool, worker, (tx) =>
      tx
        .query<{ n: number }>(`select private.knowledge_assign_vector_cells($1, $2, $3) as n`, [orgId, model, CELL_ASSIGNMENT_BATCH])
        .then((r) => r.rows[0]!.n),
    );
    assigned += n;
    onBatch();
    if (n < CELL_ASSIGNMENT_BATCH) return { cells, assigned };
  }
}
