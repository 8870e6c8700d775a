import { when } from "../format";

export function Time({ at }: { at?: string | null }) {
  const { text, title } = when(at);
  return text ? <time dateTime={at ?? undefined} title={title}>{text}</time> : null;
}
