import { Tag } from "antd";
import { STATUS_COLOR } from "../format";

export function StatusTag({ status }: { status: string }) {
  return <Tag color={STATUS_COLOR[status] ?? "default"} data-status={status}>{status}</Tag>;
}
