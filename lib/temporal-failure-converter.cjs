// Loaded by path (`failureConverterPath`) in clients, workers and the workflow bundle. The SDK
// loads it with a plain `require()` (also under Vitest, which does not hook `require`), hence
// CommonJS; it imports nothing but @temporalio/common because it also runs inside the
// deterministic workflow sandbox.
//
// `encodeCommonAttributes` moves a failure's message and stack trace into `encodedAttributes`,
// a payload that the codec encrypts; the history then shows "Encoded failure" instead of an
// LLM provider's error text or a stack trace naming tenant data.
'use strict';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
