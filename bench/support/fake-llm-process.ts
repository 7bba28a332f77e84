/**
 * The zero-latency fake LLM of `npm run bench`, in a process of its own: a model provider is
 * another machine, so the CPU spent answering (HTTP parsing, JSON, SSE framing) must not be
 * charged to the runs under test, whose worker shares its event loop with nothing else.
 *
 * The parent forks this file and receives `{ url }` once the fake listens. It may then send
 * `{ type: 'requests' }` and receives `{ type: 'requests', requests: [{ model, at }] }` (`at` is
 * Date.now() at receipt, comparable across processes). The fake exits when the parent disconnects.
 *
 * The script, decided by how many tool results the model has seen: two knowledge_search calls,
 * then a streamed answer; with no tools offered, a slowly streamed answer (the TTFT agent). For
 * model `sandbox/one-tool-turn` (history events per turn), every person's message gets one
 * knowledge_search call and then the answer: a turn is one LLM call with one tool call.
 */
import { startFakeLlm, type FakeLlmRequestBody } from '../../scripts/stack/sandbox-llm.js';

const llm = await startFakeLlm();
llm.setReplyFor(
  () => true,
  (body: FakeLlmRequestBody) => {
    const toolResults = body.messages.filter((m) => m.role === 'tool').length;
    if (body.model === 'sandbox/one-tool-turn') {
      return body.messages.at(-1)?.role === 'tool'
        ? { kind: 'text', content: 'the answer to this message', chunkDelayMs: 0 }
        : { kind: 'tool_calls', calls: [{ name: 'knowledge_search', arguments: JSON.stringify({ query: `pricing ${toolResults}` }) }] };
    }
    if (!body.tools) return { kind: 'text', content: 'a streamed answer in several small pieces', chunkDelayMs: 5 };
    return toolResults < 2
      ? { kind: 'tool_calls', calls: [{ name: 'knowledge_search', arguments: JSON.stringify({ query: `pricing ${toolResults}` }) }] }
      : { kind: 'text', content: 'benchmark answer with several words to stream', chunkDelayMs: 0 };
  },
);
process.on('message', (message: { type: string }) => {
  if (message.type === 'requests') {
    process.send!({ type: 'requests', requests: llm.requests.map((r) => ({ model: (r.body as { model?: string }).model, at: r.at })) });
  }
});
process.once('disconnect', () => {
  void llm.close().finally(() => process.exit(0));
});
process.send!({ url: llm.url });
