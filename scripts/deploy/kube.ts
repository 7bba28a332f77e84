/**
 * The two things the deploy script needs from the outside: the rendered overlay (kustomize) and
 * a cluster (kubectl). `--dry-run` swaps the cluster for a recorded state and prints every
 * command it would have run, one JSON line each, which is what tests/ops/bluegreen.test.ts reads.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

// Kubernetes objects are free-form JSON here; the script touches a handful of known fields.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type K8sObject = Record<string, any>;

function toolCache(): string {
  const xdg = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(process.env.GPT_AGENT_PLATFORM_CACHE ?? path.join(xdg, 'gpt-agent-platform'), 'tools', 'bin');
}

/** kustomize on PATH or in the project's tool cache (built by .ci/run), else `kubectl kustomize`. */
export function kustomizeCommand(): string[] | undefined {
  if (process.env.KUSTOMIZE) return [process.env.KUSTOMIZE, 'build'];
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), toolCache()]) {
    if (dir && existsSync(path.join(dir, 'kustomize'))) return [path.join(dir, 'kustomize'), 'build'];
  }
  if (spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0) return ['kubectl', 'kustomize'];
  return undefined;
}

export function render(overlay: string): K8sObject[] {
  const command = kustomizeCommand();
  if (!command) throw new Error('kustomize is not installed (go install sigs.k8s.io/kustomize/kustomize/v5@v5.7.1) and kubectl is not either');
  const result = spawnSync(command[0]!, [...command.slice(1), overlay], { encoding: 'utf8', maxBuffer: 32 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`${command.join(' ')} ${overlay} failed: ${result.stderr}`);
  return parseAllDocuments(result.stdout)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((d): d is K8sObject => d !== null);
}

export interface Cluster {
  /** The live object, or undefined when it does not exist. */
  get(kind: string, name: string): K8sObject | undefined;
  apply(objects: K8sObject[]): void;
  /** Any other kubectl command (rollout status, wait, patch, scale); throws when it fails. */
  kubectl(args: string[]): void;
}

export class KubectlCluster implements Cluster {
  constructor(private readonly namespace: string) {}
  private run(args: string[], input?: string): string {
    const result = spawnSync('kubectl', ['--namespace', this.namespace, ...args], { encoding: 'utf8', input, maxBuffer: 32 * 1024 * 1024, stdio: ['pipe', 'pipe', 'pipe'] });
    if (result.status !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${result.stderr.trim()}`);
    return result.stdout;
  }
  get(kind: string, name: string): K8sObject | undefined {
    const result = spawnSync('kubectl', ['--namespace', this.namespace, 'get', kind, name, '-o', 'json'], { encoding: 'utf8' });
    if (result.status !== 0) {
      if (/NotFound/.test(result.stderr)) return undefined;
      throw new Error(`kubectl get ${kind} ${name} failed: ${result.stderr.trim()}`);
    }
    return JSON.parse(result.stdout) as K8sObject;
  }
  apply(objects: K8sObject[]): void {
    process.stdout.write(this.run(['apply', '--server-side', '--force-conflicts', '--field-manager', 'gap-release', '-f', '-'], objects.map((o) => JSON.stringify(o)).join('\n')));
  }
  kubectl(args: string[]): void {
    process.stdout.write(this.run(args));
  }
}

/** What a command would do, printed as JSON lines, against live objects read from a file. */
export class DryRunCluster implements Cluster {
  private readonly live: Record<string, K8sObject>;
  constructor(
    private readonly namespace: string,
    stateFile: string | undefined,
  ) {
    this.live = stateFile ? (JSON.parse(readFileSync(stateFile, 'utf8')) as Record<string, K8sObject>) : {};
  }
  get(kind: string, name: string): K8sObject | undefined {
    return this.live[`${kind}/${name}`];
  }
  apply(objects: K8sObject[]): void {
    const summary = objects.map((o) => ({
      kind: o.kind,
      name: o.metadata.name,
      ...(o.spec?.template?.spec?.containers ? { images: o.spec.template.spec.containers.map((c: K8sObject) => c.image), replicas: o.spec.replicas } : {}),
      ...(o.kind === 'Service' ? { selector: o.spec.selector, annotations: o.metadata.annotations ?? {} } : {}),
      ...(o.spec?.template?.spec?.containers?.[0]?.command ? { command: o.spec.template.spec.containers[0].command } : {}),
      ...(o.spec?.template?.spec?.containers?.[0]?.env ? { env: Object.fromEntries(o.spec.template.spec.containers[0].env.filter((e: K8sObject) => 'value' in e).map((e: K8sObject) => [e.name, e.value])) } : {}),
      ...(o.spec?.selector?.matchLabels ? { matchLabels: o.spec.selector.matchLabels } : {}),
      ...(o.spec?.template?.spec?.containers?.[0]?.envFrom ? { secrets: o.spec.template.spec.containers[0].envFrom.map((f: K8sObject) => f.secretRef?.name).filter(Boolean) } : {}),
    }));
    console.log(JSON.stringify({ kubectl: ['--namespace', this.namespace, 'apply', '--server-side', '-f', '-'], objects: summary }));
  }
  kubectl(args: string[]): void {
    console.log(JSON.stringify({ kubectl: ['--namespace', this.namespace, ...args] }));
  }
}
