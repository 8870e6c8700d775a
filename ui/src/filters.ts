// The Jobs page's filters, kept in the URL so a view can be shared and survives Back.

export const STATUSES = [
  "pending", "dispatched", "running", "succeeded", "failed", "timed_out", "cancelled", "lost",
] as const;

export interface JobFilter {
  status: string[];
  notStatus: string[];
  name: string;
  tag: string;
  worker: string;
  label: string;
  since: string;
  until: string;
}

const LIST = ["status", "notStatus"] as const;
const TEXT = ["name", "tag", "worker", "label", "since", "until"] as const;

export function fromSearch(search: URLSearchParams): JobFilter {
  const list = (k: string) => (search.get(k) ?? "").split(",").filter(Boolean);
  return {
    status: list("status"),
    notStatus: list("not_status"),
    name: search.get("name") ?? "",
    tag: search.get("tag") ?? "",
    worker: search.get("worker") ?? "",
    label: search.get("label") ?? "",
    since: search.get("since") ?? "",
    until: search.get("until") ?? "",
  };
}

export function toSearch(f: JobFilter): URLSearchParams {
  const out = new URLSearchParams();
  for (const k of LIST) if (f[k].length) out.set(k === "notStatus" ? "not_status" : k, f[k].join(","));
  for (const k of TEXT) if (f[k]) out.set(k, f[k]);
  return out;
}

/** The API's query parameters for GET /jobs (and for a bulk action's filter). */
export function toQuery(f: JobFilter): Record<string, string> {
  return Object.fromEntries(toSearch(f));
}
