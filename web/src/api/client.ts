import createClient, { type Middleware } from 'openapi-fetch';
import type { paths } from './schema';

/** An RFC 9457 problem as the API answers errors. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  requestId?: string;
  errors?: Array<{ path: string; message: string }>;
}

/** Thrown by `ok()`: screens show its title and detail. */
export class ApiProblem extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.title}: ${problem.detail}`);
  }
}

export function isProblem(value: unknown): value is Problem {
  return typeof value === 'object' && value !== null && typeof (value as Problem).title === 'string' && typeof (value as Problem).status === 'number';
}

let tokenSource: () => Promise<string | null> = async () => null;
/** The session's access token for every request (set once sign-in is known). */
export function setTokenSource(source: () => Promise<string | null>): void {
  tokenSource = source;
}
export const accessToken = () => tokenSource();

const auth: Middleware = {
  async onRequest({ request }) {
    const token = await tokenSource();
    if (token) request.headers.set('authorization', `Bearer ${token}`);
    return request;
  },
};

/** Typed from the API's OpenAPI document (schema.d.ts is generated, and checked to be current). */
export const api = createClient<paths>({ baseUrl: '' });
api.use(auth);

/** Unwraps an openapi-fetch answer: the data, or an ApiProblem carrying the server's problem. */
export function ok<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error !== undefined || !result.response.ok) {
    const body = result.error;
    throw new ApiProblem(
      isProblem(body)
        ? body
        : { type: 'about:blank', title: result.response.statusText || 'Request failed', status: result.response.status, detail: 'The server answered without details.' },
    );
  }
  return result.data as T;
}
