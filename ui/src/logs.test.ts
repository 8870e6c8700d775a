import { describe, expect, it } from "vitest";
import { after, appendLines, type LogLine } from "./logs";

const line = (pos: string, text = pos): LogLine => ({ attempt: 1, seq: 0, stream: "stdout", line: text, at: "", pos });

describe("log lines", () => {
  it("orders positions by stream sequence, then index, as numbers", () => {
    expect(after("10.0", "9.5")).toBe(true);
    expect(after("9.10", "9.9")).toBe(true);
    expect(after("9.1", "9.1")).toBe(false);
  });

  it("keeps a line once across a page and a reconnect that resends it", () => {
    const lines: LogLine[] = [];
    expect(appendLines(lines, [line("5.0"), line("5.1"), line("6.0")])).toBe(3);
    expect(appendLines(lines, [line("5.1"), line("6.0"), line("6.1"), line("7.0")])).toBe(2);
    expect(lines.map((l) => l.pos)).toEqual(["5.0", "5.1", "6.0", "6.1", "7.0"]);
  });
});
