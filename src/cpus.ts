import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Where {@link availableCpus} looks; tests point it at a directory of their own. */
export interface CpuSources {
  /** The cgroup file system. Default is `/sys/fs/cgroup`. */
  readonly cgroupRoot?: string;
  /** Text of `/proc/self/cgroup`. Default is read from there. */
  readonly selfCgroup?: string;
  /** CPUs the scheduler lets this process use. Default is `os.availableParallelism()`. */
  readonly schedulable?: number;
}

/**
 * The CPUs this process can really use: the scheduler's count (CPU affinity, cpusets), capped by a
 * cgroup CPU quota, which is how a container's CPU limit (Kubernetes `resources.limits.cpu`) is
 * enforced. A fractional quota is rounded down (2.5 CPUs → 2), never below 1.
 */
export function availableCpus(sources: CpuSources = {}): number {
  const schedulable = sources.schedulable ?? os.availableParallelism?.() ?? os.cpus().length;
  const quota = cgroupCpuLimit(sources);
  return quota === null ? schedulable : Math.max(1, Math.min(schedulable, Math.floor(quota)));
}

/**
 * The tightest CPU quota on this process's cgroup and its ancestors, in CPUs (quota / period), or null
 * when there is none or it cannot be read. cgroup v2 (`cpu.max`), else v1 (`cpu.cfs_quota_us` and
 * `cpu.cfs_period_us`).
 */
export function cgroupCpuLimit(sources: CpuSources = {}): number | null {
  const root = sources.cgroupRoot ?? '/sys/fs/cgroup';
  const self = sources.selfCgroup ?? read('/proc/self/cgroup') ?? '';
  const limits: number[] = [];
  for (const line of self.split('\n')) {
    const [, controllers, cgroup] = /^\d+:([^:]*):(.*)$/.exec(line.trim()) ?? [];
    if (cgroup === undefined) continue;
    if (controllers === '') {
      for (const dir of ancestors(root, cgroup)) limits.push(...v2Limit(dir));
    } else if (controllers.split(',').includes('cpu')) {
      for (const mount of [path.join(root, controllers), path.join(root, 'cpu')]) {
        for (const dir of ancestors(mount, cgroup)) limits.push(...v1Limit(dir));
      }
    }
  }
  return limits.length ? Math.min(...limits) : null;
}

/** `<root>/a/b`, `<root>/a`, `<root>`: in a container the cgroup path is often `/` and only the root counts. */
function ancestors(root: string, cgroup: string): string[] {
  const parts = cgroup.split('/').filter(Boolean);
  return parts.map((_, i) => path.join(root, ...parts.slice(0, parts.length - i))).concat(root);
}

function v2Limit(dir: string): number[] {
  const [quota, period] = (read(path.join(dir, 'cpu.max')) ?? '').trim().split(/\s+/);
  return quota && quota !== 'max' && Number(period) > 0 ? [Number(quota) / Number(period)] : [];
}

function v1Limit(dir: string): number[] {
  const quota = Number(read(path.join(dir, 'cpu.cfs_quota_us')));
  const period = Number(read(path.join(dir, 'cpu.cfs_period_us')));
  return quota > 0 && period > 0 ? [quota / period] : [];
}

function read(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}
