import { ApplicationFailure } from '@temporalio/activity';
import { ConnectionUnavailableError } from '../integrations/crm/credentials.js';
import { CrmError } from '../integrations/crm/http.js';
import { LlmError } from '../integrations/llm/errors.js';
import type { ChatRoute } from '../integrations/llm/org-provider.js';
import { CrmFailureTypes } from './crm-failure-types.js';
import { NonRetryableFailureTypes } from './failure-types.js';

/**
 * The one mapping from the errors our integrations classify onto Temporal's retry semantics:
 * answers that will not change on retry (4xx, refused credentials, a connection that needs a
 * new authorization) become non-retryable failures with a stable type; 429 retries after the
 * provider's own `Retry-After`; 5xx, timeouts and network errors retry with the activity's
 * backoff. Anything else is returned unchanged (Temporal retries it as an unknown error).
 */
export function toActivityFailure(err: unknown): unknown {
  if (err instanceof LlmError) return llmFailure(err);
  if (err instanceof ConnectionUnavailableError) {
    return ApplicationFailure.nonRetryable(err.message, CrmFailureTypes.connectionUnavailable, { reason: err.reason });
  }
  if (err instanceof CrmError) {
    if (err.retryable) {
      return ApplicationFailure.create({
        message: err.message,
        type: `CrmRetryable:${err.kind}`,
        ...(err.details.retryAfterMs !== undefined ? { nextRetryDelay: err.details.retryAfterMs } : {}),
      });
    }
    const type = err.kind === 'auth' || err.kind === 'forbidden' ? CrmFailureTypes.auth : CrmFailureTypes.rejected;
    return ApplicationFailure.nonRetryable(err.message, type, { kind: err.kind, status: err.details.status ?? null });
  }
  return err;
}

/**
 * A failed call to the LLM a run was routed to (integrations/llm/org-provider.ts). The org's own
 * provider refusing its key is the org's to fix, so it says so, names the provider and never
 * retries; everything else maps as for the deployment's provider.
 */
export function toLlmCallFailure(err: unknown, route: ChatRoute, orgId: string): unknown {
  if (route.source === 'org' && err instanceof LlmError && err.kind === 'auth') {
    return ApplicationFailure.nonRetryable(
      `The organization's own LLM provider (${route.host}) rejected its API key (HTTP ${err.status ?? 'error'}). ` +
        `Set a valid key with PUT /v1/orgs/${orgId}/llm-provider, or remove the provider to use the service's. Provider said: ${err.message}`,
      NonRetryableFailureTypes.llmKeyRejected,
    );
  }
  return toActivityFailure(err);
}

function llmFailure(err: LlmError): unknown {
  switch (err.kind) {
    case 'rate_limited':
      return ApplicationFailure.create({ type: 'LlmRateLimited', message: err.message, nextRetryDelay: err.retryAfterMs });
    case 'rejected':
      return ApplicationFailure.nonRetryable(err.message, NonRetryableFailureTypes.llmRejected);
    case 'auth':
      return ApplicationFailure.nonRetryable(err.message, NonRetryableFailureTypes.llmAuth);
    case 'aborted':
      // The activity was cancelled; let the SDK report the cancellation it is already handling.
      return err;
    case 'server':
      return ApplicationFailure.create({ type: 'LlmServerError', message: err.message });
    case 'timeout':
      return ApplicationFailure.create({ type: 'LlmTimeout', message: err.message });
    case 'network':
      return ApplicationFailure.create({ type: 'LlmNetworkError', message: err.message });
    case 'invalid_response':
      return ApplicationFailure.create({ type: 'LlmInvalidResponse', message: err.message });
  }
}
