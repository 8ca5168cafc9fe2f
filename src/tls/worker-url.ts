/**
 * Worker threads must load compiled JavaScript. From dist/ the worker sits next to this file;
 * when this module runs from TypeScript sources (vitest, vite-node), the built copy in dist/
 * is used, so `npm run build` must have run.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ChannelError } from './errors.js';

export function workerUrl(name: 'send-worker' | 'recv-worker'): URL {
  const fromSource = import.meta.url.endsWith('.ts');
  const url = fromSource ? new URL(`../../dist/tls/${name}.js`, import.meta.url) : new URL(`./${name}.js`, import.meta.url);
  if (fromSource && !existsSync(fileURLToPath(url))) {
    throw new ChannelError(`${fileURLToPath(url)} is missing: run "npm run build" first`);
  }
  return url;
}
