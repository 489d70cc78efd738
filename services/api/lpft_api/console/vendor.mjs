// Copies the pinned libraries out of node_modules (after `npm ci`) to where the console and
// its tests load them from; the copies are committed, so neither CI nor `make demo` needs node.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..", "..", "..");
const copies = [
  ["uplot/dist/uPlot.esm.js", join(here, "static/assets/vendor/uplot/uPlot.esm.js")],
  ["uplot/dist/uPlot.min.css", join(here, "static/assets/vendor/uplot/uPlot.min.css")],
  ["uplot/LICENSE", join(here, "static/assets/vendor/uplot/LICENSE")],
  ["axe-core/axe.min.js", join(repo, "tests/browser/vendor/axe-core/axe.min.js")],
  ["axe-core/LICENSE", join(repo, "tests/browser/vendor/axe-core/LICENSE")],
];
for (const [from, to] of copies) {
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(join(here, "node_modules", from), to);
  console.log(`${from} -> ${to}`);
}
