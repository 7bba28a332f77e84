import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { toActivityFailure } from '../../activities/activity-failure.js';
import { CrmFailureTypes } from '../../activities/crm-failure-types.js';
import { NonRetryableFailureTypes } from '../../activities/failure-types.js';
import { ConnectionUnavailableError } from '../../integrations/crm/credentials.js';
import { CrmError } from '../../integrations/crm/http.js';
import { LlmError, type LlmErrorKind } from '../../integrations/llm/errors.js';

function asFailure(err: unknown): ApplicationFailure {
  const failure = toActivityFailure(err);
  expect(failure).toBeInstanceOf(ApplicationFailure);
  return failure as ApplicationFailure;
}

describe('integration errors → Temporal failures', () => {
  it.each<[LlmErrorKind, string, boolean]>([
    ['rejected', NonRetryableFailureTypes.llmRejected, true],
    ['auth', NonRetryableFailureTypes.llmAuth, true],
    ['server', 'LlmServerError', false],
    ['timeout', 'LlmTimeout', false],
    ['network', 'LlmNetworkError', false],
    ['invalid_response', 'LlmInvalidResponse', false],
  ])('an LLM %s error becomes %s (non-retryable: %s)', (kind, type, nonRetryable) => {
    const failure = asFailure(new LlmError(kind, `provider said ${kind}`));
    expect(failure.type).toBe(type);
    expect(failure.nonRetryable).toBe(nonRetryable);
    expect(failure.message).toBe(`provider said ${kind}`);
  });

  it("retries an LLM 429 after the provider's Retry-After, not the backoff", () => {
    const failure = asFailure(new LlmError('rate_limited', 'slow down', { status: 429, retryAfterMs: 7_000 }));
    expect(failure).toMatchObject({ type: 'LlmRateLimited', nonRetryable: false, nextRetryDelay: 7_000 });
  });

  it('hands an aborted LLM call back unchanged: the SDK is already reporting the cancellation', () => {
    const aborted = new LlmError('aborted', 'cancelled');
    expect(toActivityFailure(aborted)).toBe(aborted);
  });

  it('retries a CRM 429 after its wait and stops on what retrying cannot fix', () => {
    expect(asFailure(new CrmError('kommo', 'rate-limited', 'busy', { status: 429, retryAfterMs: 1_500 }))).toMatchObject({
      type: 'CrmRetryable:rate-limited',
      nonRetryable: false,
      nextRetryDelay: 1_500,
    });
    expect(asFailure(new CrmError('hubspot', 'auth', 'token refused', { status: 401 }))).toMatchObject({ type: CrmFailureTypes.auth, nonRetryable: true });
    expect(asFailure(new CrmError('hubspot', 'forbidden', 'scope missing', { status: 403 }))).toMatchObject({ type: CrmFailureTypes.auth, nonRetryable: true });
    expect(asFailure(new CrmError('kommo', 'not-found', 'no such lead', { status: 404 }))).toMatchObject({ type: CrmFailureTypes.rejected, nonRetryable: true });
  });

  it('stops on a connection that needs a new authorization, keeping the reason', () => {
    const failure = asFailure(new ConnectionUnavailableError('reauthorization-required', 'authorize again'));
    expect(failure).toMatchObject({ type: CrmFailureTypes.connectionUnavailable, nonRetryable: true, details: [{ reason: 'reauthorization-required' }] });
  });

  it('passes anything else through for Temporal to retry', () => {
    const bug = new TypeError('undefined is not a function');
    expect(toActivityFailure(bug)).toBe(bug);
  });
});
