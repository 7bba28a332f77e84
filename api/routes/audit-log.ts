import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { pageQuery } from '../pagination.js';
import { problemSchema } from '../schemas.js';
import type { AuditService } from '../services/audit.js';

const auditEntrySchema = z.object({
  id: z.string(),
  actor: z.object({ type: z.enum(['user', 'api_key', 'worker', 'system']), id: z.string().nullable() }),
  action: z.string(),
  target: z.object({ type: z.string(), id: z.string().nullable() }).nullable(),
  metadata: z.record(z.string(), z.unknown()),
  createdAt: z.string(),
});

export function auditLogRoutes(audit: AuditService): FastifyPluginAsyncZod {
  return async (app) => {
    app.get('/orgs/:orgId/audit-log', {
      config: { auth: 'bearer', minRole: 'admin' },
      schema: {
        operationId: 'listAuditLog',
        summary: 'Read the audit log, newest first (admin)',
        params: z.object({ orgId: z.uuid() }),
        querystring: z.object(pageQuery),
        response: {
          200: z.object({ items: z.array(auditEntrySchema), nextCursor: z.string().nullable() }),
          400: problemSchema,
          403: problemSchema,
          404: problemSchema,
        },
      },
      handler: async (request) => audit.listAuditLog(request.principal, request.params.orgId, request.query),
    });
  };
}
