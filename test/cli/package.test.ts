/**
 * The package as a user gets it: `npm pack`, then installed from the tarball into an empty
 * project, the npm cache preferred (the addon builds in the install step), and globally under a
 * prefix. The installed command runs, and the README's library examples typecheck against the
 * installed types and run.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from '../helpers/before-all.js';
import { REPO_ROOT } from '../fixtures/meta.js';
import { sampleStream } from '../helpers/sample-stream.js';

const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const dir = mkdtempSync(join(tmpdir(), 'migstream-package-'));
const project = join(dir, 'project');
const globalPrefix = join(dir, 'global');
let tarball = '';

/**
 * npm preferring its cache: the set-up's `npm install` from the lock file cached the tarballs
 * but not the registry's package documents, which resolving the tarball's ranges needs (on a
 * fresh CI machine `--offline` failed with ENOTCACHED for @mongodb-js/zstd). Those few
 * documents come from the npm registry; every tarball comes from the cache.
 */
async function npm(args: string[], cwd: string): Promise<string> {
  // Asynchronous: an install builds the addon (a minute on a loaded 2-core machine), and a
  // worker blocked that long misses vitest's 60 s RPC deadline ("Timeout calling onTaskUpdate").
  const { stdout } = await promisify(execFile)('npm', [...args, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8', timeout: 240_000 });
  return stdout;
}

/** The ```ts blocks of the README's "Library" and "Native addon" sections. */
function readmeExamples(): string[] {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const blocks: string[] = [];
  for (const section of ['## Library', '## Native addon']) {
    const start = readme.indexOf(section);
    const block = /```ts\n([\s\S]*?)```/.exec(readme.slice(start));
    if (start < 0 || block === null) throw new Error(`README has no ts example under "${section}"`);
    blocks.push(block[1]!);
  }
  return blocks;
}

beforeAllOrFail(async () => {
  // --ignore-scripts: dist/ is built by pretest; a rebuild here would race the other CLI tests.
  const packed = await npm(['pack', REPO_ROOT, '--ignore-scripts', '--pack-destination', dir, '--json'], dir);
  tarball = join(dir, (JSON.parse(packed) as { filename: string }[])[0]!.filename);
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'uses-migstream', version: '1.0.0', private: true, type: 'module' }));
  await npm(['install', tarball], project);
}, 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the packed package', () => {
  test('holds what an install needs and nothing of the work tree', () => {
    const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n');
    for (const file of ['package/bin/migstream', 'package/dist/index.js', 'package/dist/index.d.ts', 'package/binding.gyp', 'package/scripts/build-native.sh', 'package/LICENSE', 'package/README.md']) {
      expect(listing).toContain(file);
    }
    expect(listing.filter((f) => /^package\/(test|fuzz|bench|\.cache|node_modules|build)\//.test(f))).toEqual([]);
  });

  test('installed from the tarball, the npm cache preferred: the addon is built and the command runs', () => {
    const installed = join(project, 'node_modules', 'migstream');
    expect(readdirSync(join(installed, 'build', 'Release'))).toContain('migstream_native.node');
    const bin = join(project, 'node_modules', '.bin', 'migstream');
    expect(execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim()).toBe(`migstream ${version}`);
    const stream = join(dir, 'sample.mig');
    writeFileSync(stream, sampleStream().bytes);
    const result = spawnSync(bin, ['inspect', stream, '--json'], { encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ error: null, totalBytes: sampleStream().bytes.length });
  });

  test("the README's library examples typecheck against the installed types, and the first one runs", () => {
    const [library, addon] = readmeExamples();
    // The addon example uses names the README leaves to the reader.
    const declared = 'declare const guestBytes: number;\ndeclare const page: number;\ndeclare const batch: Uint8Array;\n';
    writeFileSync(join(project, 'library.ts'), library!);
    writeFileSync(join(project, 'addon.ts'), declared + addon!);
    const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const check = spawnSync(
      process.execPath,
      [
        tsc,
        '--noEmit',
        '--strict',
        '--target',
        'es2022',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        '--typeRoots',
        join(REPO_ROOT, 'node_modules', '@types'),
        '--types',
        'node',
        'library.ts',
        'addon.ts',
      ],
      { cwd: project, encoding: 'utf8' },
    );
    expect(check.status, check.stdout + check.stderr).toBe(0);
    // Run the first example as plain JavaScript (it has no type annotations) on a sample stream.
    writeFileSync(join(project, 'library.mjs'), library!);
    writeFileSync(join(project, 'vm.mig'), sampleStream().bytes);
    const ran = spawnSync(process.execPath, ['library.mjs'], { cwd: project, encoding: 'buffer' });
    expect(ran.status, ran.stderr.toString()).toBe(0);
    expect(ran.stdout.equals(sampleStream().bytes)).toBe(true);
  });

  test('npm install -g --prefix puts a working migstream in PREFIX/bin', async () => {
    await npm(['install', '-g', '--prefix', globalPrefix, tarball], dir);
    expect(execFileSync(join(globalPrefix, 'bin', 'migstream'), ['--version'], { encoding: 'utf8' }).trim()).toBe(`migstream ${version}`);
  }, 300_000);
});
