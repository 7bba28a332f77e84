/**
 * Client for an OpenAI-compatible embeddings endpoint (`POST {baseUrl}/embeddings`). Like the
 * chat client it never retries (Temporal does) and validates what the provider answers. Vectors
 * come back scaled to unit length, so cosine similarity is a dot product in SQL.
 */
import { z } from 'zod';

export class EmbeddingError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'EmbeddingError';
  }
}

export interface Embedder {
  /** The model every vector this embedder returns comes from; stored beside the vectors. */
  readonly model: string;
  embed(texts: string[], signal?: AbortSignal): Promise<number[][]>;
}

export interface EmbeddingsClientOptions {
  baseUrl: string;
  apiKey?: string;
  model: string;
  timeoutMs: number;
  fetch?: typeof fetch;
}

const answerSchema = z.object({
  data: z.array(z.object({ index: z.number().int().nonnegative(), embedding: z.array(z.number()).min(1).max(4096) })),
});

export function normalise(vector: number[]): number[] {
  const norm = Math.sqrt(vector.reduce((s, x) => s + x * x, 0));
  return norm > 0 ? vector.map((x) => x / norm) : vector;
}

export class EmbeddingsClient implements Embedder {
  readonly model: string;
  readonly #opts: EmbeddingsClientOptions;

  constructor(opts: EmbeddingsClientOptions) {
    this.model = opts.model;
    this.#opts = opts;
  }

  async embed(texts: string[], signal?: AbortSignal): Promise<number[][]> {
    if (texts.length === 0) return [];
    const timeout = AbortSignal.timeout(this.#opts.timeoutMs);
    let response: Response;
    try {
      response = await (this.#opts.fetch ?? fetch)(`${this.#opts.baseUrl.replace(/\/$/, '')}/embeddings`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(this.#opts.apiKey ? { authorization: `Bearer ${this.#opts.apiKey}` } : {}) },
        body: JSON.stringify({ model: this.model, input: texts }),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (err) {
      // A refusal the caller's fetch already classified (the SSRF guard) stays as it is.
      if (err instanceof EmbeddingError) throw err;
      throw new EmbeddingError(`embeddings request failed: ${(err as Error).message}`, true);
    }
    if (!response.ok) {
      // Providers sometimes echo the key they refused; it must not reach logs or histories.
      const body = await response.text().catch(() => '');
      const detail = (this.#opts.apiKey ? body.split(this.#opts.apiKey).join('[redacted]') : body).slice(0, 300);
      // 429 and 5xx may pass; a refused key or a rejected request will not.
      const retryable = response.status === 429 || response.status >= 500;
      throw new EmbeddingError(`embeddings endpoint answered ${response.status}: ${detail}`, retryable, response.status);
    }
    const parsed = answerSchema.safeParse(await response.json().catch(() => null));
    if (!parsed.success || parsed.data.data.length !== texts.length) {
      throw new EmbeddingError('embeddings endpoint answered something that is not one embedding per input', true);
    }
    const vectors = [...parsed.data.data].sort((a, b) => a.index - b.index).map((d) => normalise(d.embedding));
    const dims = vectors[0]!.length;
    if (vectors.some((v) => v.length !== dims)) throw new EmbeddingError('embeddings of one request differ in dimension', true);
    return vectors;
  }
}
