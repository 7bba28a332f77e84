import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';

/**
 * Go-built ops tools (actionlint, kustomize): on PATH, or in the project's tool cache where
 * .ci/run builds them from the Go module proxy. Missing is allowed on a laptop, never when the
 * REQUIRE_<TOOL> flag is set (CI and .ci/run set it), like promtool and Chromium.
 */
export function findOpsTool(name: string): string | undefined {
  const cache = opsToolCache();
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), cache]) {
    if (dir && existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

/** Fails under REQUIRE_<NAME>=1 when the tool is missing; otherwise says what was skipped. */
export function requireOrWarn(name: string, flag: string, install: string): void {
  expect(process.env[flag], `${name} is not installed (${install})`).not.toBe('1');
  console.warn(`${name} not found: ${install}; set ${flag}=1 to make this a failure`);
}

/** The project's tool cache (outside the repository), where .ci/run puts the Go-built tools. */
export function opsToolCache(): string {
  const xdg = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(process.env.GPT_AGENT_PLATFORM_CACHE ?? path.join(xdg, 'gpt-agent-platform'), 'tools', 'bin');
}

/** `go` on PATH or where this image keeps it; undefined when the machine has no Go. */
export function findGo(): string | undefined {
  return findOpsTool('go') ?? (existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined);
}
