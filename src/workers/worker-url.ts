/**
 * Where a worker thread's compiled JavaScript is. Workers must load compiled code: from dist/
 * it sits beside the module that starts it; when that module runs from TypeScript sources
 * (vitest, vite-node) the built copy in dist/ is used, so `npm run build` must have run.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WorkerError } from './errors.js';

/**
 * The URL of `path` (from the source root, without extension: "workers/worker",
 * "tls/send-worker"), or `missing`'s error when it has not been built.
 */
export function workerUrl(path: string, missing: (message: string) => Error = (message) => new WorkerError(message)): URL {
  const fromSource = import.meta.url.endsWith('.ts');
  const url = fromSource ? new URL(`../../dist/${path}.js`, import.meta.url) : new URL(`../${path}.js`, import.meta.url);
  if (fromSource && !existsSync(fileURLToPath(url))) throw missing(`cannot find the compiled worker (${fileURLToPath(url)}): run "npm run build"`);
  return url;
}
