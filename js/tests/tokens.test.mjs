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
