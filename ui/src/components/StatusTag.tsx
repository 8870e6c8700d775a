import { Tag } from "antd";
import { STATUS_COLOR } from "../format";

// Text, background and border per kind of status, dark enough on their tint for WCAG AA
// (Ant Design's preset tag colours are not, by axe-core's contrast check).
const STYLE: Record<string, { color: string; background: string; borderColor: string }> = {
  success: { color: "#1f5c07", background: "#f6ffed", borderColor: "#b7eb8f" },
  error: { color: "#a8071a", background: "#fff1f0", borderColor: "#ffa39e" },
  warning: { color: "#873800", background: "#fffbe6", borderColor: "#ffe58f" },
  processing: { color: "#003eb3", background: "#e6f4ff", borderColor: "#91caff" },
  default: { color: "#262626", background: "#fafafa", borderColor: "#d9d9d9" },
};

export function StatusTag({ status }: { status: string }) {
  return <Tag style={STYLE[STATUS_COLOR[status] ?? "default"]} data-status={status}>{status}</Tag>;
}

/** The same colours for other labels (a tick's outcome, a schedule's state). */
export function KindTag({ kind, children }: { kind: keyof typeof STYLE; children: React.ReactNode }) {
  return <Tag style={STYLE[kind]}>{children}</Tag>;
}
