/** Writes docs/errors.md from src/errors.ts: `npm run docs:errors`. */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderErrorsDoc } from './errors-doc.js';

const path = fileURLToPath(new URL('../docs/errors.md', import.meta.url));
writeFileSync(path, renderErrorsDoc());
console.log(`wrote ${path}`);
