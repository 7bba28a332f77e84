/**
 * The sandbox LLM of `npm run dev` (it echoes the lead's message, at zero latency) in a process of
 * its own, for `bench:conversations`: a model provider is another machine, so its CPU must not be
 * charged to the conversations under test.
 *
 * The parent forks this file and receives `{ url }` once the fake listens. It may then send
 * `{ type: 'requests' }` and receives `{ type: 'requests', requests: [{ at, doneAt, said }] }`:
 * when each chat completion arrived and was answered (Date.now(), comparable across processes) and
 * the last user message it answered. The fake exits when the parent disconnects.
 */
import { startFakeLlm, type FakeLlmRequestBody } from '../../scripts/stack/sandbox-llm.js';

const llm = await startFakeLlm();
process.on('message', (message: { type: string }) => {
  if (message.type !== 'requests') return;
  const requests = llm.requests
    .filter((r) => r.path === '/v1/chat/completions')
    .map((r) => {
      const said = (r.body as FakeLlmRequestBody | null)?.messages?.filter((m) => m.role === 'user').at(-1)?.content;
      return { at: r.at, doneAt: r.doneAt ?? null, said: typeof said === 'string' ? said : JSON.stringify(said ?? '') };
    });
  process.send!({ type: 'requests', requests });
});
process.once('disconnect', () => {
  void llm.close().finally(() => process.exit(0));
});
process.send!({ url: llm.url });
