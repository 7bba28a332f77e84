import { readdirSync, readFileSync } from 'node:fs';
import type pg from 'pg';

/** Linux reports process CPU in clock ticks of 10 ms (USER_HZ = 100 on every mainstream kernel build). */
const TICK_MS = 10;

/** utime, stime, cutime, cstime and the parent pid of a process, from /proc/<pid>/stat. */
function stat(pid: number): { ppid: number; own: number; reaped: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name may contain spaces and parentheses; the fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(fields[1]), own: Number(fields[11]) + Number(fields[12]), reaped: Number(fields[13]) + Number(fields[14]) };
}

/**
 * CPU time (ms) the Postgres server behind `admin` has used so far: the postmaster, its live
 * backends and workers, and the children it has already reaped. Differences over a phase give
 * the server's CPU for that phase, whatever else runs on the machine. Linux only.
 */
export async function postgresCpuMeter(admin: pg.Pool): Promise<() => number> {
  const { rows } = await admin.query<{ pid: number }>('select pg_backend_pid() as pid');
  const postmaster = stat(rows[0]!.pid)?.ppid;
  if (!postmaster) throw new Error('cannot read /proc: the Postgres CPU meter needs Linux and a local server');
  return () => {
    const root = stat(postmaster);
    if (!root) throw new Error('the Postgres server is gone');
    let ticks = root.own + root.reaped;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const child = stat(Number(entry));
      if (child && child.ppid === postmaster) ticks += child.own;
    }
    return ticks * TICK_MS;
  };
}
