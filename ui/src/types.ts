// The shapes the API answers (projections/queries.py; the job is events/job.py's JobState).

export interface Attempt {
  n: number;
  worker_id: string;
  status: string;
  dispatched_at: string;
  started_at?: string | null;
  finished_at?: string | null;
  exit_code?: number | null;
  error?: string | null;
}

export interface Job {
  id: string;
  domain: string;
  status: string;
  spec: { name: string; executor: { type: string; [k: string]: unknown }; tags?: string[]; labels?: Record<string, string>; priority?: number };
  submitted_at: string;
  updated_at: string;
  attempt?: number;
  worker_id?: string | null;
  attempts?: Attempt[];
  pending_reason?: string | null;
  cancel_requested?: boolean;
  dispatched_at?: string | null;
  started_at?: string | null;
  finished_at?: string | null;
  exit_code?: number | null;
  error?: string | null;
  result?: unknown;
  retry_of?: string | null;
  schedule_id?: string | null;
  last_seq: number;
  trace_id?: string | null;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface JobEvent {
  seq: number;
  subject: string;
  type: string;
  at: string;
  actor: string;
  [k: string]: unknown;
}

export interface Worker {
  id: string;
  status: string;
  admin_state?: "active" | "draining" | "disabled";
  draining?: boolean | null;
  active_jobs?: number | null;
  max_concurrency: number;
  tags?: string[];
  executors?: string[];
  host?: { hostname?: string };
  last_heartbeat_at?: string | null;
  [k: string]: unknown;
}

export interface Schedule {
  id: string;
  status: string;
  spec: { name: string; cron?: string | null; interval_s?: number | null; timezone?: string; overlap_policy?: string; catchup_policy?: string; job: { name: string } };
  paused?: boolean;
  pause_note?: string | null;
  next_fire_at?: string | null;
  last_fired_at?: string | null;
  last_job_id?: string | null;
  fired?: number;
  skipped?: number;
  missed?: number;
}

export interface Tick {
  seq: number;
  outcome: string;
  tick: string | null;
  planned_at: string | null;
  fired_at: string | null;
  lateness_s: number | null;
  job_id: string | null;
  reason: string | null;
  job_status?: string | null;
  [k: string]: unknown;
}

export interface PreviewTick {
  tick: string;
  local: string;
  fire_at: string | null;
}

export interface Info {
  domain: string;
  admin: boolean;
  actor: string;
  version: string;
}
