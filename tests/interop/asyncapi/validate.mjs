// Validate AsyncAPI documents with the official parser: `node validate.mjs FILE...`.
// Prints one JSON line per file: {"file", "errors": [...], "warnings": n}; exits 1 on any error.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"));
  // severity 0 is an error (Spectral's DiagnosticSeverity.Error)
  const errors = diagnostics
    .filter((d) => d.severity === 0)
    .map((d) => `${d.code}: ${d.message} at ${JSON.stringify(d.path)}`);
  if (document === undefined || errors.length > 0) failed = true;
  console.log(JSON.stringify({ file, errors, warnings: diagnostics.length - errors.length,
    channels: document ? document.channels().length : 0 }));
}
process.exit(failed ? 1 : 0);
