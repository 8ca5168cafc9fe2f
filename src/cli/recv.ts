import { readerGone } from '../native/fd.js';
import { receive } from '../tls/receiver.js';
import { formatSummary, summaryJson } from './transport-summary.js';
import { emitSummary, progressWanted, reportUsageLines } from './conventions.js';
import { StreamBytesTap, writePageHashFile } from '../migrate/stream-hashes.js';
import { parseAddress, parseSeconds, tlsMaterialFrom, tlsOptionSpec, tlsUsage } from './transport-options.js';
import { writeAll } from './fd-io.js';
import { describeWriteError, openOutputFile } from './output-file.js';
import { parse, type Command } from './args.js';
import { Progress } from './progress.js';

const usage = `Usage: migstream recv --listen HOST:PORT [-o OUT|-] [TLS options]

Receive one stream from "migstream send" and write it, in order, to stdout (or OUT). Exits 0
once the sender's end frame matched the bytes and checksum received; any channel failure
ends it with a non-zero exit, and nothing more is written after the failure. A connection
that fails the TLS handshake, authentication or the session check (a port scan, a health
check, a stranger) is logged and dropped, and recv goes on listening; once a session is
admitted, only its own channels are. Credentials are checked before it listens.

  qemu-system-x86_64 … -incoming "exec:migstream recv --listen 0.0.0.0:4444 --tls /etc/migstream"

Options:
  --listen HOST:PORT   address to listen on (port 0: any; the port is printed on stderr)
  -o, --output FILE    write the stream to FILE instead of stdout
  --no-client-auth     do not require a client certificate (TLS without mutual authentication)
  --page-hashes FILE   once the stream ended, write the hashes of the final RAM image it
                       carried to FILE (for "incoming --verify")
  --timeout S          fail when an open channel is silent for S seconds, when no sender
                       is admitted S seconds after the first connection, or when the
                       output's reader takes nothing for S seconds (default 30)
${reportUsageLines('  ', 20)}
${tlsUsage}`;

export const recvCommand: Command = {
  name: 'recv',
  usage,
  async run(argv) {
    const { values } = parse(argv, { ...tlsOptionSpec, listen: { type: 'string' }, output: { type: 'string', short: 'o' }, 'no-client-auth': { type: 'boolean' }, 'page-hashes': { type: 'string' } }, 0);
    const address = parseAddress(values.listen, '--listen');
    const tls = tlsMaterialFrom('server', values, values['no-client-auth'] === true ? { noClientAuth: true } : {});
    const output = openOutputFile(values.output);
    const timeoutMs = parseSeconds(values.timeout, 30);
    // Touching process.stdout makes a stdout pipe non-blocking (libuv's uv_pipe_open), so a
    // reader that stops reading shows as EAGAIN, which writeAll times out, instead of a
    // write(2) that blocks this thread, and every timer of the session, forever.
    if (output.fd === 1) void process.stdout;
    const progress = new Progress(progressWanted(values), 'recv', null);
    const hashFile = values['page-hashes'];
    const tap = hashFile === undefined ? undefined : new StreamBytesTap();
    try {
      const summary = await receive({
        host: address.host,
        port: address.port,
        tls,
        timeoutMs,
        write: (chunks) => {
          if (tap) for (const chunk of chunks) tap.push(chunk);
          try {
            writeAll(output.fd, chunks, timeoutMs);
          } catch (error) {
            throw describeWriteError(output.name, error);
          }
        },
        outputGone: () => readerGone(output.fd),
        onListening: ({ host, port }) => process.stderr.write(`migstream recv: listening on ${host}:${port}${tls ? ' (TLS 1.3)' : ' (plaintext)'}\n`),
        onProgress: (bytes) => progress.update(bytes),
        onRefused: (peer, reason) => process.stderr.write(`migstream recv: refused ${peer}: ${reason}\n`),
      });
      output.commit();
      if (tap) writePageHashFile(hashFile!, tap.end());
      progress.done();
      emitSummary(
        values,
        output.name === 'stdout',
        () => formatSummary('migstream recv', summary),
        () => ({ command: 'recv', ...summaryJson(summary) }),
      );
      return 0;
    } finally {
      progress.done();
      output.discard();
    }
  },
};
