import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { createDataConverter } from './temporal-codec.js';

export interface TemporalClientOptions {
  address: string;
  namespace: string;
  /** `createDataConverter(keyring)` from lib/temporal-codec.ts; the same one the workers use. */
  dataConverter?: DataConverter;
}

/** The one way the API and tools connect to Temporal as a client. */
export async function createTemporalClient(options: TemporalClientOptions): Promise<Client> {
  const connection = await Connection.connect({ address: options.address });
  return new Client({ connection, namespace: options.namespace, dataConverter: options.dataConverter ?? createDataConverter(undefined) });
}
