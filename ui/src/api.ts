// The REST API under /api/v1, with the bearer token kept for the browser session only
// (sessionStorage: never in a URL, gone when the tab closes).

export const API = "/api/v1";
const TOKEN_KEY = "jobstream.token";
const DOMAIN_KEY = "jobstream.domain";

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null): void {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** The domain an admin acts on (sent as the X-Domain header); empty: the default domain,
 * or a domain token's own. */
export function domain(): string {
  return sessionStorage.getItem(DOMAIN_KEY) ?? "";
}

export function setDomain(value: string): void {
  if (value) sessionStorage.setItem(DOMAIN_KEY, value);
  else sessionStorage.removeItem(DOMAIN_KEY);
}

/** An API error: the HTTP status and the API's own message (`detail`), field by field for a 422. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly fields: Record<string, string> = {},
  ) {
    super(message);
  }
}

type Detail = string | { loc?: (string | number)[]; msg?: string }[] | undefined;

/** What to tell the user of a failure: an API error's own message, else the thrown value. */
export function errorText(err: unknown): string {
  return String(err instanceof Error ? err.message : err);
}

export function describe(status: number, detail: Detail): ApiError {
  if (Array.isArray(detail)) {
    const fields: Record<string, string> = {};
    for (const d of detail) {
      const loc = (d.loc ?? []).filter((p) => p !== "body").join(".");
      fields[loc || "request"] = d.msg ?? "invalid";
    }
    const text = Object.entries(fields)
      .map(([k, v]) => `${k}: ${v}`)
      .join("; ");
    return new ApiError(status, text || `HTTP ${status}`, fields);
  }
  // The domain's own refusals name their field first: "cron: expected 5 fields, …".
  const named = typeof detail === "string" ? /^([a-z_][a-z0-9_.]*): (.+)$/s.exec(detail) : null;
  if (named) return new ApiError(status, detail as string, { [named[1]]: named[2] });
  return new ApiError(status, detail || `HTTP ${status}`);
}

export function headers(extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  const d = domain();
  if (d) h["X-Domain"] = d;
  return h;
}

export function url(path: string, params: Record<string, string | number | undefined | null> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return `${API}${path}${s ? `?${s}` : ""}`;
}

export async function call<T>(method: string, path: string, body?: unknown, params = {}): Promise<T> {
  const res = await fetch(url(path, params), {
    method,
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw describe(res.status, data?.detail);
  return data as T;
}

/** A 202: the write is in the log, but the read model does not show it yet (it lags, or is being
 * rebuilt). Not a failure, and not to be sent again: the views update when it catches up. */
export interface Accepted {
  accepted: true;
  seq: number;
  [k: string]: unknown;
}

export function isAccepted(value: unknown): value is Accepted {
  return typeof value === "object" && value !== null && (value as { accepted?: unknown }).accepted === true;
}

export const get = <T>(path: string, params: Record<string, string | number | undefined | null> = {}) =>
  call<T>("GET", path, undefined, params);
export const post = <T>(path: string, body?: unknown) => call<T>("POST", path, body ?? {});
