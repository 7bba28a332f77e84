/**
 * A fake Kommo account in a process of its own, for `bench:crm`'s throughput run: a real
 * provider is another machine, so the CPU spent generating and serialising its pages must not
 * be charged to the sync under test, which shares its event loop with nothing but the worker.
 *
 * The parent forks this file and sends `{ options, token }`; it answers `{ url }` once the
 * fake listens, and exits when the parent disconnects.
 */
import { startFakeKommo, type KommoFakeOptions } from '../../scripts/stack/crm-fakes/kommo.js';

interface StartMessage {
  options: KommoFakeOptions;
  token: string;
}

process.once('message', (message: StartMessage) => {
  void (async () => {
    const kommo = await startFakeKommo(message.options);
    kommo.addLongLivedToken(message.token);
    process.send!({ url: kommo.url });
    process.once('disconnect', () => {
      void kommo.close().finally(() => process.exit(0));
    });
  })();
});
