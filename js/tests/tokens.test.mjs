import assert from "node:assert/strict";
import { test } from "node:test";
import { setTokenText, tokenElement, tokenLabel } from "../lib/tokens.js";

// A document stand-in that records how text arrives: innerHTML would be a bug.
function fakeDoc() {
  return {
    createElement(tag) {
      return {
        tag,
        className: "",
        textContent: "",
        set innerHTML(_v) {
          throw new Error("token text must never be assigned as markup");
        },
      };
    },
  };
}

test("token text is set as text, markup and all", () => {
  const el = tokenElement("<img src=x onerror=alert(1)>", { doc: fakeDoc() });
  assert.equal(el.textContent, "<img src=x onerror=alert(1)>");
  assert.equal(el.className, "lms-token-text");
  assert.equal(el.tag, "span");
});

test("missing text becomes empty, numbers become strings", () => {
  assert.equal(setTokenText({ textContent: "x" }, null).textContent, "");
  assert.equal(setTokenText({ textContent: "" }, 42).textContent, "42");
});

test("labels name position and id", () => {
  assert.equal(tokenLabel("·Paris", 5, 7042), "·Paris (5, id 7042)");
  assert.equal(tokenLabel("↵", 0), "↵ (0)");
});

test("chips wrap into lines like a flex row, and a window shows its lines only", async () => {
  const { chipLayout, visibleLines } = await import("../parts/tokens.js");
  const lay = chipLayout([30, 30, 30, 50, 10], 100, 4);
  assert.deepEqual(Array.from(lay.x), [0, 34, 68, 0, 54]);
  assert.deepEqual(Array.from(lay.line), [0, 0, 0, 1, 1]);
  assert.deepEqual(Array.from(lay.lineStart), [0, 3, 5]);
  assert.equal(lay.lines, 2);
  // a chip wider than the row still gets a line of its own
  assert.deepEqual(Array.from(chipLayout([150, 20], 100, 4).line), [0, 1]);
  assert.equal(chipLayout([], 100, 4).lines, 0);
  assert.deepEqual(visibleLines(0, 100, 38, 50, 0), { first: 0, last: 2 });
  assert.deepEqual(visibleLines(38 * 40, 100, 38, 50, 2), { first: 38, last: 44 });
  assert.deepEqual(visibleLines(38 * 48, 100, 38, 50, 2), { first: 46, last: 49 });
});
