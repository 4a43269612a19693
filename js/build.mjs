// Bundle every js/views/<name>.js into src/lmscope/static/<name>.js, plus the static-export
// runtime and the shared stylesheet. The output is committed so `pip install .` needs no node; CI rebuilds and diffs it.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as esbuild from "esbuild";

const views = readdirSync("js/views").filter((f) => f.endsWith(".js"));

// A view's own stylesheet (js/styles/<view>.css) arrives minified, as a string for injectCss.
const cssAsText = {
  name: "css-as-text",
  setup(build) {
    build.onLoad({ filter: /\.css$/ }, async ({ path }) => {
      const { code } = await esbuild.transform(readFileSync(path, "utf8"), {
        loader: "css",
        minify: true,
      });
      return { contents: code.trim(), loader: "text" };
    });
  },
};
const common = {
  bundle: true,
  target: "es2020",
  minify: true,
  legalComments: "none",
  logLevel: "info",
};
const builds = [
  // anywidget imports each view as an ES module
  {
    ...common,
    entryPoints: views.map((f) => join("js/views", f)),
    outdir: "src/lmscope/static",
    format: "esm",
    plugins: [cssAsText],
  },
  // saved HTML pages inline the runtime as a classic script exposing `lmscopeStatic.mount`
  {
    ...common,
    entryPoints: ["js/static_runtime.js"],
    outfile: "src/lmscope/static/static_runtime.js",
    format: "iife",
    globalName: "lmscopeStatic",
  },
  // the stylesheet every view shares (LmscopeWidget._css)
  {
    ...common,
    entryPoints: ["js/styles/lmscope.css"],
    loader: { ".css": "css" },
    outfile: "src/lmscope/static/lmscope.css",
  },
];

if (process.argv.includes("--watch")) {
  for (const options of builds) await (await esbuild.context(options)).watch();
} else {
  await Promise.all(builds.map((options) => esbuild.build(options)));
}
