import { describe, expect, it } from "vitest";
import { jobBody } from "./NewJob";

describe("the new job form", () => {
  it("sends the API's field names, and only the options given", () => {
    expect(jobBody({ name: "hi", type: "shell", script: "echo hi" })).toEqual({
      name: "hi", executor: { type: "shell", script: "echo hi" }, tags: [],
    });
    expect(jobBody({ name: "p", type: "python", script: "print(1)", tags: ["gpu"], timeout_s: 5, max_retries: 2 })).toEqual({
      name: "p", executor: { type: "python", script: "print(1)" }, tags: ["gpu"], timeout_s: 5, max_retries: 2,
    });
  });
});
