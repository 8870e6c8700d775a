import dayjs from "dayjs";

/** A time in the user's zone; the UTC instant goes in the hover title. */
export function when(iso?: string | null): { text: string; title: string } {
  if (!iso) return { text: "", title: "" };
  const d = dayjs(iso);
  return { text: d.format("YYYY-MM-DD HH:mm:ss"), title: `${new Date(iso).toISOString()} UTC` };
}

/** Seconds between two times, as "1.2 s" / "3 min 4 s"; empty when either is missing. */
export function gap(from?: string | null, to?: string | null): string {
  if (!from || !to) return "";
  const s = (new Date(to).getTime() - new Date(from).getTime()) / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export const STATUS_COLOR: Record<string, string> = {
  pending: "default",
  dispatched: "processing",
  running: "processing",
  succeeded: "success",
  failed: "error",
  timed_out: "error",
  lost: "warning",
  cancelled: "warning",
};
