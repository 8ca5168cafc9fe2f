/**
 * `--verify`: before the destination resumes, each side compares its paused VM's RAM page by
 * page with the final image the stream carried (page hashes taken by send / recv on the way,
 * stream-hashes.ts), and the two exchange verdicts (verdict-channel.ts).
 *
 *   source (postmigrate, paused)            destination (-S, loaded, paused)
 *   hashes ← send's file                    hashes ← recv's file
 *   compare pmemsave FIFO with hashes       compare pmemsave FIFO with hashes
 *   ── source verdict ───────────────────▶  both good and same image? ── resuming ──▶ cont
 *   ◀── destination verdict (resuming?) ──  otherwise stays paused
 *   not resuming: cont the source  
 *
 * The source resumes only on the destination's word that it does not: if the verdict port
 * cannot be reached, the source stays paused and the error says so, never two running copies.
 */
import { existsSync } from 'node:fs';
import type { QmpExecutor } from '../qemu/qmp.js';
import { guestMemoryLayout, withDumpOffsets } from '../qemu/memory.js';
import { chooseSample } from './verify-sample.js';
import type { TlsMaterial } from '../tls/credentials.js';
import { VerifyError } from './errors.js';
import { RamDumpComparer } from './ram-compare.js';
import { readGuestMemory } from './ram-reader.js';
import { readPageHashFile, type StreamHashes } from './stream-hashes.js';
import { exchangeVerdict, type VerdictListener } from './verdict-channel.js';
import { verdictProblem, type Verdict } from './verdict-wire.js';

export interface SideCheck extends Verdict {
  /** Time the comparison took (reading and hashing the paused VM's RAM). */
  ms: number;
  bytes: number;
}

export interface VerifyOutcome {
  source: Verdict;
  destination: Verdict;
  /** This side's comparison time and bytes, for downtime per GiB. */
  local: { ms: number; bytes: number };
}

/** Waits for send/recv to write their hash file (they do at the stream's end). */
async function loadHashes(path: string, timeoutMs: number): Promise<StreamHashes> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`no page hashes from the transport after ${timeoutMs / 1000} s (${path})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return readPageHashFile(path);
}

/** This VM's RAM against the stream's image; any failure is the verdict's error, not a throw. */
export async function checkVmAgainstImage(qmp: QmpExecutor, hashFile: string, options: { timeoutMs?: number; sampleFraction?: number } = {}): Promise<SideCheck> {
  const started = Date.now();
  let digest: string | null = null;
  try {
    const image = await loadHashes(hashFile, options.timeoutMs ?? 30_000);
    digest = image.digest;
    const byId = new Map(image.blocks.map((b) => [b.idstr, b.hashes]));
    const layout = await guestMemoryLayout(qmp);
    const ranges = options.sampleFraction === undefined || options.sampleFraction >= 1 ? withDumpOffsets(layout) : chooseSample(layout, options.sampleFraction);
    const comparer = new RamDumpComparer(ranges, (id) => byId.get(id), { pageSize: image.pageSize, keep: 16 });
    const bytes = await readGuestMemory(qmp, ranges, (chunk) => comparer.push(chunk));
    const result = comparer.finish();
    return { digest, pagesCompared: result.pagesCompared, mismatches: result.mismatches, first: result.first, error: null, ms: Date.now() - started, bytes };
  } catch (error) {
    return { digest, pagesCompared: 0, mismatches: 0, first: [], error: (error as Error).message, ms: Date.now() - started, bytes: 0 };
  }
}

const sampling = (fraction: number | undefined): { sampleFraction?: number } => (fraction === undefined ? {} : { sampleFraction: fraction });

const wireVerdict = ({ digest, pagesCompared, mismatches, first, error }: Verdict): Verdict => ({ digest, pagesCompared, mismatches, first, error });

export interface VerifySourceOptions {
  qmp: QmpExecutor;
  hashFile: string;
  control: { host: string; port: number };
  tls: TlsMaterial | null;
  timeoutMs?: number;
  /** Compare this share of RAM only (verify-sample.ts); all of it when absent. */
  sampleFraction?: number;
}

/** After `completed`, with the source paused. Throws VerifyError on any problem. */
export async function verifySource(options: VerifySourceOptions): Promise<VerifyOutcome> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const local = await checkVmAgainstImage(options.qmp, options.hashFile, sampling(options.sampleFraction));
  let answer;
  try {
    answer = await exchangeVerdict({ ...options.control, tls: options.tls, verdict: wireVerdict(local), timeoutMs });
  } catch (error) {
    const own = verdictProblem('source', local, null);
    throw new VerifyError(`${(error as Error).message}; the source stays paused because the destination's state is unknown${own ? ` (${own})` : ''}`, local.mismatches, local.first);
  }
  const problems = [verdictProblem('source', local, null), verdictProblem('destination', answer, local.digest)].filter((p) => p !== null);
  if (problems.length > 0 || !answer.resuming) {
    let resumed = '';
    if (!answer.resuming) {
      await options.qmp.execute('cont');
      resumed = '; the destination stays paused and the source was resumed';
    }
    const reason = problems.length > 0 ? problems.join('; ') : 'the destination did not resume';
    const first = local.mismatches > 0 ? local : answer;
    throw new VerifyError(`verification failed: ${reason}${resumed}`, first.mismatches, first.first);
  }
  return { source: wireVerdict(local), destination: wireVerdict(answer), local: { ms: local.ms, bytes: local.bytes } };
}

export interface VerifyDestinationOptions {
  qmp: QmpExecutor;
  hashFile: string;
  listener: VerdictListener;
  timeoutMs?: number;
  sampleFraction?: number;
}

/** The `check` of receiveMigration: throws VerifyError (the guest stays paused) unless both sides agree. */
export async function verifyDestination(options: VerifyDestinationOptions): Promise<VerifyOutcome> {
  const local = await checkVmAgainstImage(options.qmp, options.hashFile, sampling(options.sampleFraction));
  let contact;
  try {
    contact = await options.listener.waitForSource(options.timeoutMs ?? 120_000);
  } catch (error) {
    throw new VerifyError(`${(error as Error).message}; the destination stays paused`, local.mismatches, local.first);
  }
  const problems = [verdictProblem('destination', local, null), verdictProblem('source', contact.verdict, local.digest)].filter((p) => p !== null);
  const resuming = problems.length === 0;
  await contact.reply({ type: 'destination-verdict', resuming, ...wireVerdict(local) });
  if (!resuming) {
    const first = local.mismatches > 0 ? local : contact.verdict;
    throw new VerifyError(`verification failed: ${problems.join('; ')}; the destination stays paused`, first.mismatches, first.first);
  }
  return { source: wireVerdict(contact.verdict), destination: wireVerdict(local), local: { ms: local.ms, bytes: local.bytes } };
}
