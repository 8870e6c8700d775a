import { describe, expect, it } from "vitest";
import { readEvents } from "./sse";

function body(chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const chunk of chunks) c.enqueue(enc.encode(chunk));
      c.close();
    },
  });
}

describe("readEvents", () => {
  it("reassembles messages split across chunks and reports the last id", async () => {
    const seen: string[] = [];
    const got = await readEvents(body(["id: 7\nevent: submitted\nda", "ta: {\"a\":1}\n\nid: 8\nevent: disp", "atched\ndata: {}\n\n"]), (m) => {
      seen.push(`${m.id}:${m.event}:${m.data}`);
    });
    expect(seen).toEqual(['7:submitted:{"a":1}', "8:dispatched:{}"]);
    expect(got).toEqual({ lastId: "8", ended: false });
  });

  it("stops at the event the caller says ends the stream, ignoring what follows", async () => {
    const seen: string[] = [];
    const got = await readEvents(body(["id: 1.0\nevent: line\ndata: x\n\nevent: end\ndata: {}\n\nid: 9\nevent: line\ndata: y\n\n"]), (m) => {
      seen.push(m.event ?? "");
      return m.event === "end";
    });
    expect(seen).toEqual(["line", "end"]);
    expect(got).toEqual({ lastId: "1.0", ended: true });
  });

  it("skips comments (the server's keep-alive pings)", async () => {
    const seen: string[] = [];
    await readEvents(body([": ping\n\nid: 3\ndata: z\n\n"]), (m) => void seen.push(m.data));
    expect(seen).toEqual(["z"]);
  });
});
