/**
 * The API's one error model: RFC 9457 `application/problem+json`. `type` is stable and
 * documented in docs/api.md; clients branch on it, people read `detail`.
 */
export const PROBLEM_BASE = 'https://gpt-agent-platform.dev/problems/';

export const problemKinds = {
  'validation-error': { status: 400, title: 'Request is invalid' },
  'malformed-body': { status: 400, title: 'Request body is not valid JSON' },
  unauthenticated: { status: 401, title: 'Authentication required' },
  forbidden: { status: 403, title: 'Not allowed' },
  'not-found': { status: 404, title: 'Not found' },
  conflict: { status: 409, title: 'Conflict' },
  'run-ended': { status: 409, title: 'Run has ended' },
  'no-follow-up-pending': { status: 409, title: 'Run is not waiting for a follow-up' },
  'approval-not-pending': { status: 409, title: 'Approval is not pending' },
  'agent-busy': { status: 409, title: 'Agent is busy' },
  'agent-paused': { status: 409, title: 'Agent is paused' },
  'not-handed-off': { status: 409, title: 'Conversation is not handed off' },
  'not-a-conversation': { status: 409, title: 'Run is not a conversation' },
  'invite-used': { status: 409, title: 'Invite already used' },
  'limit-reached': { status: 409, title: 'Limit reached' },
  'invite-expired': { status: 410, title: 'Invite expired or revoked' },
  'payload-too-large': { status: 413, title: 'Request body too large' },
  'unsupported-media-type': { status: 415, title: 'Unsupported media type' },
  'rate-limited': { status: 429, title: 'Too many requests' },
  'internal-error': { status: 500, title: 'Internal error' },
  'service-unavailable': { status: 503, title: 'Service temporarily unavailable' },
} as const;

export type ProblemKind = keyof typeof problemKinds;

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  requestId?: string;
  errors?: Array<{ path: string; message: string }>;
}

export class ProblemError extends Error {
  readonly status: number;
  constructor(
    readonly kind: ProblemKind,
    readonly detail: string,
    readonly errors?: Problem['errors'],
  ) {
    super(detail);
    this.name = 'ProblemError';
    this.status = problemKinds[kind].status;
  }
}

export function toProblem(kind: ProblemKind, detail: string, extra: Partial<Problem> = {}): Problem {
  const { status, title } = problemKinds[kind];
  return { type: PROBLEM_BASE + kind, title, status, detail, ...extra };
}

export const notFound = (what: string) => new ProblemError('not-found', `${what} does not exist or you do not have access to it.`);
