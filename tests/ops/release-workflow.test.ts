/**
 * The release workflow cannot run here (no GitHub, registry or cluster), so what makes it safe is
 * checked on the file: the jobs run in the release order, production waits behind its
 * environment (the approval gate), the image is built once and deployed by digest, it is scanned
 * before it is pushed and signed after, permissions are least-privilege, every action is pinned
 * by commit, and no secret value is written in it. actionlint checks the rest of its syntax.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { findOpsTool, requireOrWarn } from '../support/ops-tools.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const file = path.join(root, '.github', 'workflows', 'release.yml');
const text = readFileSync(file, 'utf8');

interface Step {
  name?: string;
  uses?: string;
  run?: string;
  if?: string;
  id?: string;
  with?: Record<string, string | boolean>;
  env?: Record<string, string>;
}
interface Job {
  needs?: string | string[];
  environment?: string | { name: string; url?: string };
  permissions?: Record<string, string>;
  outputs?: Record<string, string>;
  env?: Record<string, string>;
  steps: Step[];
}
const workflow = parseYaml(text) as { on: { push: { tags: string[] } }; permissions: Record<string, string>; concurrency: { group: string; 'cancel-in-progress': boolean }; jobs: Record<string, Job> };
const jobs = workflow.jobs;
const needs = (job: string) => [jobs[job]!.needs ?? []].flat();
const environment = (job: string) => {
  const env = jobs[job]!.environment;
  return typeof env === 'string' ? env : env?.name;
};
/** Index of the first step matching, so order can be compared; -1 fails the comparisons loudly. */
const stepIndex = (job: string, match: (s: Step) => boolean) => {
  const i = jobs[job]!.steps.findIndex(match);
  expect(i, `${job}: a step is missing`).toBeGreaterThanOrEqual(0);
  return i;
};
const runs = (fragment: string) => (s: Step) => typeof s.run === 'string' && s.run.includes(fragment);
const uses = (action: string) => (s: Step) => typeof s.uses === 'string' && s.uses.startsWith(`${action}@`);

describe('.github/workflows/release.yml', () => {
  it('runs on version tags only, one release at a time', () => {
    expect(workflow.on).toEqual({ push: { tags: ['v[0-9]+.[0-9]+.[0-9]+'] } });
    expect(workflow.concurrency).toEqual({ group: 'release', 'cancel-in-progress': false });
  });

  it('orders the jobs verify → image → staging → production, production behind its environment', () => {
    expect(Object.keys(jobs)).toEqual(['verify', 'image', 'staging', 'production']);
    expect(needs('verify')).toEqual([]);
    expect(needs('image')).toEqual(['verify']);
    expect(needs('staging')).toEqual(['image']);
    expect(needs('production').sort()).toEqual(['image', 'staging']);
    // The approval gate: a job bound to the `production` environment waits for its required
    // reviewers; nothing else deploys to production.
    expect(environment('staging')).toBe('staging');
    expect(environment('production')).toBe('production');
    expect(environment('verify')).toBeUndefined();
    expect(environment('image')).toBeUndefined();
  });

  it('grants nothing by default, and each job only what it needs', () => {
    expect(workflow.permissions).toEqual({});
    expect(jobs.verify!.permissions).toEqual({ contents: 'read' });
    // Only the image job pushes and signs (OIDC token for keyless cosign).
    expect(jobs.image!.permissions).toEqual({ contents: 'read', packages: 'write', 'id-token': 'write' });
    expect(jobs.staging!.permissions).toEqual({ contents: 'read' });
    expect(jobs.production!.permissions).toEqual({ contents: 'read' });
    for (const job of Object.values(jobs)) {
      for (const step of job.steps.filter(uses('actions/checkout'))) expect(step.with?.['persist-credentials']).toBe(false);
    }
  });

  it('typechecks and tests with the ops tools required before anything is built', () => {
    const test = jobs.verify!.steps.find(runs('npm test'))!;
    expect(test.env).toMatchObject({ REQUIRE_PROMTOOL: '1', REQUIRE_CHROMIUM: '1', REQUIRE_ACTIONLINT: '1', REQUIRE_KUSTOMIZE: '1' });
    // npm test runs lint and the typecheck before the suites (scripts/test.ts).
    expect(readFileSync(path.join(root, 'scripts', 'test.ts'), 'utf8')).toMatch(/tsc|typecheck/);
  });

  it('builds once, writes an SBOM, scans, and only then pushes and signs the digest', () => {
    const build = stepIndex('image', uses('docker/build-push-action'));
    const sbom = stepIndex('image', uses('anchore/sbom-action'));
    const scan = stepIndex('image', uses('aquasecurity/trivy-action'));
    const push = stepIndex('image', (s) => s.id === 'push');
    const sign = stepIndex('image', runs('cosign sign'));
    expect([build, sbom, scan, push, sign]).toEqual([...[build, sbom, scan, push, sign]].sort((a, b) => a - b));
    const steps = jobs.image!.steps;
    expect(steps.filter(uses('docker/build-push-action'))).toHaveLength(1);
    expect(steps[build]!.with).toMatchObject({ load: true, push: false, file: 'docker/Dockerfile' });
    // Fails on critical findings that have a fix; unfixable ones do not block a release.
    expect(steps[scan]!.with).toMatchObject({ severity: 'CRITICAL', 'ignore-unfixed': true, 'exit-code': '1' });
    expect(steps[push]!.run).toMatch(/RepoDigests/);
    expect(steps[push]!.run).toMatch(/sha256:\[0-9a-f\]\{64\}/);
    expect(jobs.image!.outputs).toEqual({ digest: '${{ steps.push.outputs.digest }}', ref: '${{ steps.push.outputs.ref }}' });
    expect(steps[sign]!.env?.REF).toBe('${{ steps.push.outputs.ref }}');
    expect(steps[sign]!.run).toMatch(/cosign sign --yes "\$REF"/);
    expect(steps[sign]!.run).toMatch(/cosign attest --yes --type cyclonedx --predicate sbom\.cdx\.json "\$REF"/);
    // Keyless: no key file, no key secret.
    expect(text).not.toMatch(/cosign[^\n]*--key/);
  });

  it('deploys staging in order: signature, migrations, workers, API switch, smoke, load test; rolls back on failure', () => {
    const order = [
      stepIndex('staging', runs('cosign verify')),
      stepIndex('staging', runs('bluegreen.ts migrate')),
      stepIndex('staging', runs('bluegreen.ts workers')),
      stepIndex('staging', runs('bluegreen.ts api')),
      stepIndex('staging', runs('scripts/deploy/smoke.ts')),
      stepIndex('staging', runs('npm run loadtest')),
      stepIndex('staging', runs('bluegreen.ts rollback')),
    ];
    expect(order).toEqual([...order].sort((a, b) => a - b));
    const loadtest = jobs.staging!.steps.find(runs('npm run loadtest'))!;
    expect(loadtest.run).toMatch(/--webhooks on/);
    expect(loadtest.env?.LOADTEST_JWT_SECRET).toBe('${{ secrets.LOADTEST_JWT_SECRET }}');
    expect(jobs.staging!.steps.find(runs('bluegreen.ts rollback'))!.if).toBe('failure()');
    expect(jobs.staging!.env?.OVERLAY).toBe('docker/overlays/staging');
  });

  it('deploys production in the same order after the gate, watches the alerts, rolls back automatically, then retires the old colour', () => {
    const order = [
      stepIndex('production', runs('cosign verify')),
      stepIndex('production', runs('bluegreen.ts migrate')),
      stepIndex('production', runs('bluegreen.ts workers')),
      stepIndex('production', runs('bluegreen.ts api')),
      stepIndex('production', runs('scripts/deploy/watch.ts')),
      stepIndex('production', runs('bluegreen.ts rollback')),
      stepIndex('production', runs('bluegreen.ts retire')),
    ];
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(jobs.production!.steps.find(runs('bluegreen.ts rollback'))!.if).toBe('failure()');
    expect(jobs.production!.steps.find(runs('bluegreen.ts retire'))!.if).toBeUndefined();
    expect(jobs.production!.env?.OVERLAY).toBe('docker/overlays/production');
    // The watch names alerts that exist in the rules Prometheus loads.
    const watch = jobs.production!.steps.find(runs('scripts/deploy/watch.ts'))!.run!;
    const alerts = readFileSync(path.join(root, 'docker', 'prometheus', 'alerts.yml'), 'utf8');
    const watched = /--alerts (\S+)/.exec(watch)![1]!.split(',');
    expect(watched).toEqual(expect.arrayContaining(['GapApiServerErrors', 'GapApiSlow']));
    for (const alert of watched) expect(alerts, alert).toContain(`alert: ${alert}`);
  });

  it('deploys the digest the image job pushed, never a tag', () => {
    for (const job of ['staging', 'production']) {
      expect(jobs[job]!.env?.REF).toBe('${{ needs.image.outputs.ref }}');
      const deploySteps = jobs[job]!.steps.filter((s) => /bluegreen\.ts (migrate|workers|api)/.test(s.run ?? ''));
      expect(deploySteps).toHaveLength(3);
      for (const step of deploySteps) expect(step.run).toMatch(/--image "\$REF"/);
      expect(jobs[job]!.steps.find(runs('cosign verify'))!.run).toMatch(/cosign verify "\$REF"/);
    }
    // bluegreen.ts refuses anything but name@sha256:<64 hex> (tests/ops/bluegreen.test.ts).
    expect(text).not.toMatch(/:latest\b/);
  });

  it('pins every action by full commit SHA, with its version in a comment', () => {
    const refs = [...text.matchAll(/uses:\s*(\S+)(.*)$/gm)];
    expect(refs.length).toBeGreaterThan(10);
    for (const [, ref, rest] of refs) {
      expect(ref, ref).toMatch(/^[\w.-]+\/[\w.-]+@[0-9a-f]{40}$/);
      expect(rest, ref).toMatch(/# v\d+\.\d+\.\d+/);
    }
  });

  it('writes no secret: every credential comes from the environment', () => {
    const allowed = new Set(['GITHUB_TOKEN', 'KUBECONFIG', 'SMOKE_TOKEN', 'LOADTEST_JWT_SECRET', 'PROMETHEUS_TOKEN']);
    const used = [...text.matchAll(/\$\{\{\s*secrets\.(\w+)\s*\}\}/g)].map((m) => m[1]!);
    expect(used.length).toBeGreaterThan(0);
    for (const name of used) expect(allowed, name).toContain(name);
    // Secrets reach commands through env or with, never pasted into a shell line.
    for (const job of Object.values(jobs)) for (const step of job.steps) expect(step.run ?? '', step.name).not.toMatch(/secrets\./);
    for (const pattern of [
      /gh[pousr]_[A-Za-z0-9]{20,}/, // GitHub tokens
      /AKIA[0-9A-Z]{16}/, // AWS access keys
      /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
      /eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/, // JWTs
      /gap_live_[A-Za-z0-9]/, // our org API keys
      /(password|secret|token|api[_-]?key)\s*[:=]\s*['"]?(?!\$\{\{)[A-Za-z0-9+/_-]{12,}/i,
    ]) {
      expect(text, String(pattern)).not.toMatch(pattern);
    }
  });

  it('names files that exist', () => {
    for (const rel of ['docker/Dockerfile', 'scripts/deploy/bluegreen.ts', 'scripts/deploy/smoke.ts', 'scripts/deploy/watch.ts', 'docker/overlays/staging/kustomization.yaml', 'docker/overlays/production/kustomization.yaml']) {
      expect(existsSync(path.join(root, rel)), rel).toBe(true);
    }
    expect(JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).scripts.loadtest).toBeTruthy();
  });

  it('passes actionlint (every workflow)', () => {
    const actionlint = findOpsTool('actionlint');
    if (!actionlint) return requireOrWarn('actionlint', 'REQUIRE_ACTIONLINT', 'go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12');
    const result = spawnSync(actionlint, ['-no-color'], { cwd: root, encoding: 'utf8' });
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });

  it('actionlint catches a broken workflow (the check is real)', () => {
    const actionlint = findOpsTool('actionlint');
    if (!actionlint) return requireOrWarn('actionlint', 'REQUIRE_ACTIONLINT', 'go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12');
    const broken = text.replace('needs: [image, staging]', 'needs: [image, stagin]');
    const result = spawnSync(actionlint, ['-no-color', '-'], { cwd: root, encoding: 'utf8', input: broken });
    expect(result.status).not.toBe(0);
    expect(result.stdout).toMatch(/stagin/);
  });
});
