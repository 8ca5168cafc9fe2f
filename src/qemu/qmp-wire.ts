/**
 * QMP's wire, without the socket: bytes in, one JSON object per line out (QEMU ends each with
 * "\r\n" or "\n"; docs/interop/qmp-spec.rst), and each object told apart as the greeting, an
 * event, a reply to a command id, or something else. QEMU is trusted to speak QMP, but a QEMU
 * from elsewhere, a wrong socket or a damaged one must end in a QmpConnectionError, not a
 * TypeError in a socket handler or an unbounded line.
 */
import { QmpConnectionError } from './errors.js';

/**
 * Longest line kept. QEMU's largest answers (query-qmp-schema, about 200 KiB on 10.0) are far
 * below; a peer that never sends a newline is refused at this length.
 */
export const MAX_QMP_LINE = 16 * 1024 * 1024;

export type QmpMessage =
  | { kind: 'greeting'; value: Record<string, unknown> }
  | { kind: 'event'; event: string; value: Record<string, unknown> }
  | { kind: 'return'; id: unknown; value: unknown }
  | { kind: 'error'; id: unknown; error: { class: string; desc: string } }
  | { kind: 'other'; value: Record<string, unknown> };

/** Splits the bytes of a QMP connection into lines (UTF-8, any chunking). */
export class QmpLineSplitter {
  private readonly decoder = new TextDecoder('utf-8');
  private buffer = '';

  push(chunk: Uint8Array): string[] {
    this.buffer += this.decoder.decode(chunk, { stream: true });
    const lines: string[] = [];
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line) lines.push(line);
    }
    if (this.buffer.length > MAX_QMP_LINE) {
      throw new QmpConnectionError(`QMP sent a line of more than ${MAX_QMP_LINE} bytes without a newline (not a QMP socket?)`);
    }
    return lines;
  }
}

/** What one QMP line is; a line that is not a JSON object is a QmpConnectionError. */
export function parseQmpLine(line: string): QmpMessage {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (error) {
    throw new QmpConnectionError(`QMP sent invalid JSON: ${line.slice(0, 200)}`, { cause: error });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new QmpConnectionError(`QMP sent ${line.slice(0, 200)}, not a JSON object`);
  }
  const value = parsed as Record<string, unknown>;
  if (typeof value.QMP === 'object' && value.QMP !== null) return { kind: 'greeting', value };
  if (typeof value.event === 'string') return { kind: 'event', event: value.event, value };
  if ('error' in value) {
    const error = value.error as { class?: unknown; desc?: unknown } | null;
    const shaped = typeof error === 'object' && error !== null;
    return {
      kind: 'error',
      id: value.id,
      error: { class: shaped && typeof error.class === 'string' ? error.class : 'GenericError', desc: shaped && typeof error.desc === 'string' ? error.desc : JSON.stringify(error) },
    };
  }
  if ('return' in value) return { kind: 'return', id: value.id, value: value.return };
  return { kind: 'other', value };
}
