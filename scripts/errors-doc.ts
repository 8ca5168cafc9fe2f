/**
 * docs/errors.md, rendered from the catalogue in src/errors.ts (ERRORS, ERROR_FAMILIES).
 * scripts/gen-errors-doc.ts writes it (`npm run docs:errors`); test/errors.test.ts checks
 * the file is current.
 */
import { ERRORS, ERROR_FAMILIES, type ErrorCode } from '../src/errors.js';

const codes = Object.keys(ERRORS) as ErrorCode[];
const families = Object.keys(ERROR_FAMILIES) as (keyof typeof ERROR_FAMILIES)[];

/** `|` would end a table cell. */
const cell = (text: string): string => text.replace(/\|/g, '\\|');

function tree(): string[] {
  const lines: string[] = ['MigstreamError'];
  const children = (parent: string): { name: string; code?: ErrorCode }[] => [
    ...families.filter((f) => ERROR_FAMILIES[f].extends === parent).map((name) => ({ name })),
    ...codes.filter((c) => ERRORS[c].extends === parent).map((code) => ({ name: ERRORS[code].class, code })),
  ];
  const walk = (parent: string, indent: string): void => {
    const kids = children(parent);
    kids.forEach((kid, i) => {
      const last = i === kids.length - 1;
      const label = `${indent}${last ? '└── ' : '├── '}${kid.name}`;
      lines.push(kid.code === undefined ? label : `${label.padEnd(44)} ${kid.code}`);
      if (kid.code === undefined) walk(kid.name, `${indent}${last ? '    ' : '│   '}`);
    });
  };
  walk('MigstreamError', '');
  return lines;
}

export function renderErrorsDoc(): string {
  const folders = [...new Set(codes.map((c) => ERRORS[c].folder))];
  const out: string[] = [
    '# Errors',
    '',
    '<!-- Generated from src/errors.ts by `npm run docs:errors`; edit the table there, not this file. -->',
    '',
    `Every failure migstream reports is a \`MigstreamError\` with a stable \`code\`: ${codes.length} codes, each carried by`,
    'one class, exported from the package. Codes never change; match on `code` or on the class.',
    'Stream errors name the byte offset and the section, transport errors the channel or peer, CLI',
    'errors the file. **Exit** is the status `migstream` exits with when the error ends a command',
    '(1: the run failed, 2: bad usage; CONTRIBUTING.md).',
    '',
    'An error thrown in a worker thread crosses to the main thread with `serializeError` and',
    '`reviveError` (src/errors.ts): the same class, code, message, fields and cause.',
    '',
    '```',
    ...tree(),
    '```',
    '',
    '## Families',
    '',
    '| class | extends | folder | meaning |',
    '|---|---|---|---|',
    ...families.map((f) => {
      const family = ERROR_FAMILIES[f];
      return `| \`${f}\` | \`${family.extends}\` | \`src/${family.folder}\` | ${cell(family.meaning)} |`;
    }),
  ];
  for (const folder of folders) {
    out.push('', `## src/${folder}`, '', '| code | class | extends | meaning | exit |', '|---|---|---|---|---|');
    for (const code of codes.filter((c) => ERRORS[c].folder === folder)) {
      const entry = ERRORS[code];
      out.push(`| \`${code}\` | \`${entry.class}\` | \`${entry.extends}\` | ${cell(entry.meaning)} | ${entry.exit} |`);
    }
  }
  return `${out.join('\n')}\n`;
}
