/**
 * `npm run replay` reports each failure as what it is, with its own exit code, and never calls
 * anything but a divergence non-determinism: a committed history replayed without its payload
 * key, with an unknown key id, with the wrong key material, mutated to diverge, with a workflow
 * type the code does not have, against a Temporal nobody listens on; and on the dev stack it
 * finds the dev keyring by itself (never in production).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/stack/ports.js';
import { root } from '../support/app-processes.js';
import { TEST_CODEC_KEYS } from '../support/temporal.js';

const completed = path.join(root, 'tests', 'replay', 'histories', 'agentRun', 'completed.json');
const testKeyId = TEST_CODEC_KEYS.split(':')[0]!;
const otherMaterial = Buffer.alloc(32, 7).toString('base64');

interface Run {
  status: number | null;
  out: string;
}

function replay(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'scripts', 'replay.ts'), ...args], {
      cwd: root,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, DEV_SECRETS_FILE: '/nonexistent/dev-secrets.json', ...env },
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('exit', (status) => resolve({ status, out }));
  });
}

describe('npm run replay: exit codes and verdicts', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'replay-exit-'));
  const diverged = path.join(dir, 'diverged.json');
  const unknownType = path.join(dir, 'unknown-type.json');
  const devSecrets = path.join(dir, 'dev-secrets.json');
  let runs: Record<string, Run>;

  beforeAll(async () => {
    const history = JSON.parse(readFileSync(completed, 'utf8')) as { events: Array<Record<string, { activityType?: { name: string }; workflowType?: { name: string } }>> };
    // The code schedules callLlm where this history says another activity was scheduled.
    const mutated = structuredClone(history);
    mutated.events.find((e) => e.activityTaskScheduledEventAttributes)!.activityTaskScheduledEventAttributes!.activityType!.name = 'notTheActivityTheCodeCalls';
    writeFileSync(diverged, JSON.stringify(mutated));
    // A workflow type this checkout does not define: replay fails, but that is no determinism verdict.
    const renamed = structuredClone(history);
    renamed.events[0]!.workflowExecutionStartedEventAttributes!.workflowType!.name = 'noSuchWorkflow';
    writeFileSync(unknownType, JSON.stringify(renamed));
    writeFileSync(devSecrets, JSON.stringify({ jwtSecret: 'x', codecKeys: TEST_CODEC_KEYS, codecToken: 'y' }));
    const nobody = `127.0.0.1:${await freePort()}`;

    // Each run bundles the workflow code once; they run side by side.
    const entries = await Promise.all(
      Object.entries({
        noKeys: replay(['--file', completed], {}),
        unknownKey: replay(['--file', completed], { TEMPORAL_CODEC_KEYS: `other-1:${otherMaterial}` }),
        wrongKey: replay(['--file', completed], { TEMPORAL_CODEC_KEYS: `${testKeyId}:${otherMaterial}` }),
        diverged: replay(['--file', completed, '--file', diverged, '--file', unknownType], { TEMPORAL_CODEC_KEYS: TEST_CODEC_KEYS }),
        otherFailure: replay(['--file', completed, '--file', unknownType], { TEMPORAL_CODEC_KEYS: TEST_CODEC_KEYS }),
        unreachable: replay(['agent-run:any'], { TEMPORAL_ADDRESS: nobody, TEMPORAL_CODEC_KEYS: TEST_CODEC_KEYS }),
        devStack: replay(['--file', completed], { DEV_SECRETS_FILE: devSecrets }),
        devKeysInProduction: replay(['--file', completed], { DEV_SECRETS_FILE: devSecrets, APP_ENV: 'production' }),
      }).map(async ([name, run]) => [name, await run] as const),
    );
    runs = Object.fromEntries(entries);
  }, 300_000);

  it('without the payload keys: 3, says the keys are missing, and no determinism verdict', () => {
    expect(runs.noKeys!.status, runs.noKeys!.out).toBe(3);
    expect(runs.noKeys!.out).toContain(`payloads are encrypted (key ${testKeyId}) and TEMPORAL_CODEC_KEYS is not set`);
    expect(runs.noKeys!.out).not.toMatch(/NON-DETERMINISTIC|patched\(\)/);
  });

  it('with a keyring that lacks the key id: 3, naming the key', () => {
    expect(runs.unknownKey!.status, runs.unknownKey!.out).toBe(3);
    expect(runs.unknownKey!.out).toContain(`payload key ${testKeyId} is not in TEMPORAL_CODEC_KEYS (it holds other-1)`);
    expect(runs.unknownKey!.out).not.toMatch(/NON-DETERMINISTIC|patched\(\)/);
  });

  it('with other key material under the same id: 3, saying it does not decrypt', () => {
    expect(runs.wrongKey!.status, runs.wrongKey!.out).toBe(3);
    expect(runs.wrongKey!.out).toContain(`payload does not decrypt with key ${testKeyId}`);
    expect(runs.wrongKey!.out).not.toMatch(/NON-DETERMINISTIC|patched\(\)/);
  });

  it('a divergence: 1, and only the diverging history is called non-deterministic', () => {
    const { status, out } = runs.diverged!;
    expect(status, out).toBe(1);
    expect(out).toMatch(/✔ deterministic {3}agentRun /);
    expect(out.match(/✘ NON-DETERMINISTIC/g)).toHaveLength(1);
    expect(out).toMatch(/✘ NON-DETERMINISTIC agentRun [^\n]*\n\s+DeterminismViolationError/);
    expect(out).toMatch(/! REPLAY FAILED {3}noSuchWorkflow/);
    expect(out).toContain('1 of 3 NON-DETERMINISTIC');
  });

  it('any other replay failure: 5, reported as not a determinism verdict', () => {
    const { status, out } = runs.otherFailure!;
    expect(status, out).toBe(5);
    expect(out).toContain('(not a determinism verdict)');
    expect(out).toContain('1 of 2 failed to replay for a reason other than non-determinism');
    expect(out).not.toMatch(/NON-DETERMINISTIC|patched\(\)/);
  });

  it('Temporal unreachable: 4, saying where it tried', () => {
    expect(runs.unreachable!.status, runs.unreachable!.out).toBe(4);
    expect(runs.unreachable!.out).toMatch(/cannot reach Temporal at 127\.0\.0\.1:\d+, namespace default, plaintext/);
    expect(runs.unreachable!.out).not.toMatch(/NON-DETERMINISTIC/);
  });

  it('on the dev stack, finds the keyring npm run dev generated; never with APP_ENV=production', () => {
    expect(runs.devStack!.status, runs.devStack!.out).toBe(0);
    expect(runs.devStack!.out).toContain(`payload keys: the dev stack's (${devSecrets})`);
    expect(runs.devStack!.out).toContain('all 1 replayed deterministically');
    expect(runs.devKeysInProduction!.status, runs.devKeysInProduction!.out).toBe(3);
    expect(runs.devKeysInProduction!.out).not.toContain("the dev stack's");
  });
});
