// ESLint formatter for `npm run lint`: one line per finding, `path:line:col: rule: message`,
// paths relative to the checkout (ESLint 9 dropped its own one-line formatters).
import { relative } from 'node:path';

/** @param {import('eslint').ESLint.LintResult[]} results */
export default function format(results) {
  const lines = [];
  for (const result of results) {
    const path = relative(process.cwd(), result.filePath);
    for (const m of result.messages) lines.push(`${path}:${m.line ?? 0}:${m.column ?? 0}: ${m.ruleId ?? (m.fatal ? 'parse error' : 'eslint')}: ${m.message}`);
  }
  return lines.join('\n');
}
