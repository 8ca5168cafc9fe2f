// moved to src/codecs/registry.ts; src/tls switches when its rewrite lands
export * from '../codecs/registry.js';
