import { formatBlockSize } from '../block/block-size.js';
import { createDecoder, encodedLength, type MigrationRecord } from '../codec.js';
import { DeviceFieldCollector, type DeviceFields } from '../report/device-fields.js';
import { StreamReport, type StreamSummary } from '../report/stream-report.js';
import { MigstreamError } from '../stream/errors.js';
import { parse, type Command } from './args.js';
import { blockSizeOptionSpec, blockSizeUsage, parseBlockSizeOption } from './block-size-option.js';
import { progressWanted, reportOptionSpec } from './conventions.js';
import { formatBytes, formatRate, megabytesPerSecond, table } from './format.js';
import { openInput } from './io.js';
import { Progress } from './progress.js';
import { streamSource } from './stream-source.js';

const usage = `Usage: migstream inspect [FILE|-] [--json] [--iterations] [--fields] [options]

Decode a migration stream (or the stream in a migstream container) and report what it holds: header and machine type, RAM blocks,
per-iteration page counts (normal, zero, xbzrle, compressed) and bytes, pages sent more than
once (re-dirtied by the guest) per RAM block and per iteration, normal pages that were all
zero, block devices and their chunk counts and chunk size, device-state sections with sizes, the vmdesc,
total bytes and decode speed.
A damaged stream is reported up to the damage, then the error: in the report, and on stderr
(exit status 1).

Options:
  --json           the report as JSON on stdout
  --iterations     list every ram iteration (text output lists at most 20)
  --fields         split each device-state section into its fields, using the vmdesc
${blockSizeUsage('  ', 21)}
  --progress       progress on stderr (default when stderr is a terminal)
  --no-progress    no progress line
  --quiet          no report: only the exit status and the error, if any
  -h, --help       this help`;

export interface InspectResult extends StreamSummary {
  input: string;
  decodeSeconds: number;
  decodeMBps: number;
  error: { code: string; message: string; offset: number | null } | null;
  /** With --fields: every device-state section split into fields (null without a vmdesc). */
  deviceFields?: DeviceFields[] | null;
  /** With --fields: why the vmdesc could not split the sections, when it could not. */
  vmdescProblem?: string;
}

export interface InspectOptions {
  progress?: boolean;
  fields?: boolean;
  /** The block section's chunk size (mig-block-size); found from the stream when omitted. */
  blockSize?: number;
}

export async function inspectStream(inputPath: string | undefined, options: InspectOptions = {}): Promise<InspectResult> {
  const input = openInput(inputPath);
  const blockSize = options.blockSize === undefined ? {} : { blockSize: options.blockSize };
  const decoder = createDecoder(blockSize);
  const report = new StreamReport(blockSize);
  const fields = options.fields === true ? new DeviceFieldCollector() : undefined;
  const add = (record: MigrationRecord): void => {
    report.add(record, encodedLength(record));
    fields?.add(record);
  };
  const progress = new Progress(options.progress === true, 'inspect', input.size);
  const source = streamSource(input.stream);
  let error: InspectResult['error'] = null;
  let bytesIn = 0;
  try {
    for await (const chunk of source.chunks) {
      bytesIn += chunk.length;
      for (const record of decoder.push(chunk)) add(record);
      progress.update(source.bytesRead());
    }
    for (const record of decoder.end()) add(record);
  } catch (caught) {
    if (!(caught instanceof MigstreamError)) throw caught;
    const offset = (caught as { offset?: unknown }).offset;
    error = { code: caught.code, message: caught.message, offset: typeof offset === 'number' ? offset : null };
    input.stream.destroy();
  }
  progress.done();
  const seconds = progress.elapsed();
  const deviceFields = fields?.result();
  const vmdescProblem = fields?.vmdescProblem;
  return {
    input: source.container ? `${input.name} (migstream container, decompressed)` : input.name,
    ...report.summary(),
    decodeSeconds: seconds,
    decodeMBps: megabytesPerSecond(bytesIn, seconds),
    error,
    ...(deviceFields === undefined ? {} : { deviceFields }),
    ...(vmdescProblem === undefined ? {} : { vmdescProblem }),
  };
}

function describeConfiguration(result: InspectResult): string {
  if (result.configuration.length === 0) return 'no subsections';
  return result.configuration
    .map((sub) => {
      if (sub.name === 'configuration/target-page-bits') return `target-page-bits ${sub.targetPageBits}`;
      if (sub.name === 'configuration/capabilities') return `capabilities ${sub.capabilities.join(',') || '-'}`;
      return `uuid ${sub.uuid.toString('hex')}`;
    })
    .join('; ');
}

export function formatInspect(result: InspectResult, allIterations: boolean): string {
  const lines: string[] = [];
  const state = result.complete ? (result.vmdesc ? 'complete (EOF + vmdesc)' : 'complete (EOF)') : 'INCOMPLETE';
  lines.push(`stream     ${result.input}, ${formatBytes(result.totalBytes)} (${result.totalBytes} bytes), ${state}`);
  lines.push(`header     QEVM version ${result.version ?? '?'}, machine ${result.machineType ?? '(no configuration section)'}`);
  lines.push(`config     ${describeConfiguration(result)}`);
  const s = result.sections;
  lines.push(`sections   ${s.start} START, ${s.part} PART, ${s.end} END, ${s.full} FULL`);
  if (result.ram) {
    const ram = result.ram;
    const t = ram.totals;
    lines.push('');
    const resend = ram.resend;
    lines.push(`RAM        ${ram.blocks.length} blocks, ${formatBytes(ram.blocks.reduce((sum, b) => sum + b.usedLength, 0))}`);
    lines.push(
      indent(
        table(
          ['block', 'size', 'normal', 'zero', 'xbzrle', 'compressed', 'pages sent', 're-sent'],
          ram.blocks.map((b) => {
            const c = ram.perBlock[b.idstr];
            const r = resend.perBlock[b.idstr];
            return [b.idstr, formatBytes(b.usedLength), c?.normal ?? 0, c?.zero ?? 0, c?.xbzrle ?? 0, c?.compressed ?? 0, r?.pages ?? 0, r?.resentPages ?? 0];
          }),
        ),
      ),
    );
    lines.push(
      `pages      ${t.normal} normal, ${t.zero} zero, ${t.xbzrle} xbzrle (${formatBytes(t.xbzrleBytes)}), ${t.compressed} compressed (${formatBytes(t.compressedBytes)}); ${t.normalAllZero} normal pages all zero`,
    );
    const r = resend.totals;
    const share = r.pages === 0 ? '0' : ((100 * r.resentPages) / r.pages).toFixed(1);
    lines.push(`re-sent    ${r.resentPages} of ${r.pages} pages sent more than once (${share}%), ${r.resends} sends beyond the first (${resend.pageSize}-byte pages)`);
    lines.push(`iterations ${t.iterations} ram sections, ${formatBytes(t.bytes)}`);
    const rows = ram.iterations.map((it) => [String(it.index), it.kind, it.normal, it.zero, it.xbzrle, it.compressed, it.resent, formatBytes(it.bytes)]);
    const shown = allIterations || rows.length <= 20 ? rows : [...rows.slice(0, 10), ['…', `${rows.length - 15} more`, '', '', '', '', '', ''], ...rows.slice(-5)];
    lines.push(indent(table(['#', 'kind', 'normal', 'zero', 'xbzrle', 'compressed', 're-sent', 'bytes'], shown)));
  }
  if (result.block) {
    const block = result.block;
    lines.push('');
    const source = { option: 'given', stream: 'found from the stream', default: "no data chunk: QEMU's assumed" }[block.chunkSizeSource];
    lines.push(`block      ${block.sections} sections, last progress ${block.lastProgress ?? '-'}%, chunks of ${formatBlockSize(block.chunkSize)} (${source})`);
    lines.push(
      indent(
        table(
          ['device', 'data chunks', 'zero chunks', 'data bytes', 'extent'],
          block.devices.map((d) => [d.name, d.dataChunks, d.zeroChunks, formatBytes(d.bytes), formatBytes(d.extentBytes)]),
        ),
      ),
    );
  }
  lines.push('');
  const deviceBytes = result.devices.reduce((sum, d) => sum + d.bytes, 0);
  lines.push(`devices    ${result.devices.length} device-state sections, ${formatBytes(deviceBytes)}`);
  if (result.devices.length > 0) {
    lines.push(
      indent(
        table(
          ['section', 'idstr', 'instance', 'version', 'bytes'],
          result.devices.map((d) => [String(d.sectionId), d.idstr, d.instanceId, d.versionId, d.bytes]),
        ),
      ),
    );
  }
  if (result.commands.length > 0) {
    lines.push(`commands   ${result.commands.map((c) => `${c.name}(${c.length})`).join(', ')}`);
  }
  lines.push(`vmdesc     ${result.vmdesc ? `present, ${formatBytes(result.vmdesc.bytes)}, ${result.vmdesc.devices ?? '?'} devices` : 'absent'}`);
  lines.push(`decode     ${formatBytes(result.totalBytes)} in ${result.decodeSeconds.toFixed(3)} s, ${formatRate(result.totalBytes, result.decodeSeconds)}`);
  if (result.deviceFields !== undefined) lines.push('', ...formatDeviceFields(result.deviceFields, result.vmdescProblem));
  if (result.error) lines.push(`\nERROR      ${result.error.message}`);
  return `${lines.join('\n')}\n`;
}

function formatDeviceFields(devices: DeviceFields[] | null, vmdescProblem: string | undefined): string[] {
  if (vmdescProblem !== undefined) return [`fields     device state cannot be split into fields: ${vmdescProblem}`];
  if (devices === null) return ['fields     no vmdesc in the stream: device state cannot be split into fields'];
  const exact = devices.filter((device) => device.exact).length;
  const lines = [`fields     ${exact} of ${devices.length} device sections split exactly into their vmdesc fields`];
  for (const device of devices) {
    const note = device.exact ? '' : `  (${device.problem ?? 'partial'})`;
    lines.push(`  [${device.sectionId}] ${device.idstr} instance ${device.instanceId}${note}`);
    for (const field of device.fields) {
      lines.push(`      ${field.path} (${field.type}, ${field.size} B @${field.offset}) = ${String(field.value)}`);
    }
  }
  return lines;
}

/** JSON.stringify replacer: bytes as hex, 64-bit values as decimal strings. */
function jsonValue(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value !== null && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return Buffer.from((value as { data: number[] }).data).toString('hex');
  }
  return value;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
}

export const inspectCommand: Command = {
  name: 'inspect',
  usage,
  async run(argv) {
    const { values, positionals } = parse(
      argv,
      {
        iterations: { type: 'boolean' },
        fields: { type: 'boolean' },
        ...blockSizeOptionSpec,
        ...reportOptionSpec,
      },
      1,
    );
    const blockSize = parseBlockSizeOption(values);
    const result = await inspectStream(positionals[0], {
      progress: progressWanted(values),
      fields: values.fields === true,
      ...(blockSize === undefined ? {} : { blockSize }),
    });
    if (values.quiet === true) {
      // Neither report nor summary: the exit status and the error line say it all.
    } else if (values.json === true) {
      process.stdout.write(`${JSON.stringify(result, jsonValue, 2)}\n`);
    } else {
      process.stdout.write(formatInspect(result, values.iterations === true));
    }
    if (result.error) {
      const at = result.error.offset === null ? '' : ` (offset ${result.error.offset})`;
      const message = result.error.message.includes('offset') ? result.error.message : `${result.error.message}${at}`;
      process.stderr.write(`migstream inspect: error: ${result.input}: ${message}\n`);
      return 1;
    }
    return 0;
  },
};
