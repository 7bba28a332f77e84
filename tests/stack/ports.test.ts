import fs from 'node:fs/promises';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort, isPortFree } from '../../scripts/stack/ports.js';
import { RecentLines } from '../../scripts/stack/process.js';

const TIME_WAIT = '06';

/** TCP states of the IPv4 sockets whose local port is `port`, from /proc/net/tcp. */
async function localSocketStates(port: number): Promise<string[]> {
  const table = await fs.readFile('/proc/net/tcp', 'utf8');
  return table
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields.length > 3 && Number.parseInt(fields[1]!.split(':')[1]!, 16) === port)
    .map((fields) => fields[3]!);
}

describe('freePort', () => {
  it('leaves the port in TIME_WAIT, so bind(0) elsewhere skips it, yet an explicit bind still works', async () => {
    const port = await freePort('127.0.0.1');
    expect(await localSocketStates(port)).toContain(TIME_WAIT);
    expect(await isPortFree('127.0.0.1', port)).toBe(true);

    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port }, resolve);
    });
    try {
      expect((server.address() as net.AddressInfo).port).toBe(port);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('gives different ports to back-to-back callers', async () => {
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort('127.0.0.1')));
    expect(new Set(ports).size).toBe(ports.length);
  });
});

describe('RecentLines', () => {
  it('keeps the cause of a crash that a long stack trace pushed out of the tail', () => {
    const lines = new RecentLines(3, (line) => line.startsWith('panic:'));
    lines.push('{"level":"warn","msg":"starting"}');
    lines.push('panic: runtime error: invalid memory address');
    for (let i = 1; i <= 10; i++) lines.push(`\tframe ${i}`);
    expect(lines.toString().split('\n')).toEqual(['panic: runtime error: invalid memory address', '… 8 more lines …', '\tframe 8', '\tframe 9', '\tframe 10']);
  });

  it('is only the tail when nothing notable scrolled out', () => {
    const lines = new RecentLines(2);
    for (const line of ['a', 'b', 'c']) lines.push(line);
    expect(lines.toString()).toBe('b\nc');
  });
});
