// Log lines as the API sends them: each carries `pos` (`<stream seq>.<index>`), unique and
// ordered, so a line seen twice (a page then the live stream, or a reconnect) is kept once.

export interface LogLine {
  attempt: number;
  seq: number;
  stream: "stdout" | "stderr" | string;
  line: string;
  at: string;
  pos: string;
}

export function posKey(pos: string): [number, number] {
  const [a, b] = pos.split(".");
  return [Number(a), Number(b ?? 0)];
}

export function after(a: string, b: string): boolean {
  const [x1, y1] = posKey(a);
  const [x2, y2] = posKey(b);
  return x1 > x2 || (x1 === x2 && y1 > y2);
}

/** Appends to `lines` only what comes after its last line; returns how many were new. */
export function appendLines(lines: LogLine[], incoming: LogLine[]): number {
  let added = 0;
  for (const line of incoming) {
    const last = lines[lines.length - 1];
    if (last === undefined || after(line.pos, last.pos)) {
      lines.push(line);
      added++;
    }
  }
  return added;
}
