/**
 * The QMP commands of the disk path (I/O): find a drive's node, dirty bitmaps, the NBD server
 * and its exports. What QEMU 7.2 and 10.0 accept is in docs/disk.md; both refuse an enabled
 * bitmap on a read-only export ("Enabled bitmap 'NAME' incompatible with readonly export",
 * nbd/server.c nbd_export_create), and a bitmap an export holds is busy until the export is gone
 * ("Bitmap 'NAME' is currently in use by another operation and cannot be used",
 * block/dirty-bitmap.c bdrv_dirty_bitmap_check).
 */
import type { QmpExecutor } from '../qemu/qmp.js';
import { QemuTimeoutError } from '../qemu/errors.js';
import { ArgumentError } from '../stream/errors.js';

/** A drive as query-block tells it. */
export interface DriveNode {
  /** The name asked for: a drive id (`-drive id=`) or a node name. */
  readonly drive: string;
  /** The node the drive's BlockBackend is attached to (the format node), e.g. `#block121`. */
  readonly nodeName: string;
  /** `image.virtual-size`: the drive's size in bytes. */
  readonly size: number;
  /** How block_set_io_throttle names the drive: its BlockBackend (`device`) or, for -blockdev, the device's qdev id. */
  readonly throttleTarget: { readonly device: string } | { readonly id: string };
}

interface QueryBlockEntry {
  device: string;
  qdev?: string;
  inserted?: { 'node-name': string; image: { 'virtual-size': number } } & Partial<Record<string, unknown>>;
}

/**
 * The node of a drive, found by drive id (query-block's `device`), qdev id or node name.
 * blockdev-nbd.c's block-export-add takes a node name; -drive gives its nodes generated names
 * (`#blockNNN`), so they are looked up rather than assumed.
 */
export async function findDriveNode(qmp: QmpExecutor, drive: string): Promise<DriveNode> {
  const entries = await qmp.execute<QueryBlockEntry[]>('query-block');
  const entry = entries.find((e) => e.inserted !== undefined && (e.device === drive || e.qdev === drive || e.inserted['node-name'] === drive));
  if (entry?.inserted === undefined) {
    const known = entries.filter((e) => e.inserted !== undefined).map((e) => e.device || e.inserted!['node-name']);
    throw new ArgumentError(`QEMU has no drive ${JSON.stringify(drive)} with a medium (drives: ${known.join(', ') || 'none'})`);
  }
  const throttleTarget = entry.device !== '' ? { device: entry.device } : { id: entry.qdev ?? drive };
  return { drive, nodeName: entry.inserted['node-name'], size: entry.inserted.image['virtual-size'], throttleTarget };
}

/**
 * The I/O limits block_set_io_throttle takes (bytes/s and requests/s; 0 = no limit), as
 * query-block reports them in `inserted`: the six required ones and the burst settings.
 */
export type IoLimits = Readonly<Record<string, number | string>>;

/** The required fields of block_set_io_throttle (qapi/block.json BlockIOThrottle). */
const REQUIRED_LIMITS = ['bps', 'bps_rd', 'bps_wr', 'iops', 'iops_rd', 'iops_wr'] as const;
/** Its optional ones that query-block echoes (blockdev.c qmp_block_set_io_throttle builds the config from scratch: a field left out is reset). */
const OPTIONAL_LIMITS = [
  'bps_max',
  'bps_rd_max',
  'bps_wr_max',
  'iops_max',
  'iops_rd_max',
  'iops_wr_max',
  'bps_max_length',
  'bps_rd_max_length',
  'bps_wr_max_length',
  'iops_max_length',
  'iops_rd_max_length',
  'iops_wr_max_length',
  'iops_size',
  'group',
] as const;

/** The drive's current I/O limits, to set one and put them all back afterwards. */
export async function readIoLimits(qmp: QmpExecutor, node: DriveNode): Promise<IoLimits> {
  const entries = await qmp.execute<QueryBlockEntry[]>('query-block');
  const entry = entries.find((e) => e.inserted !== undefined && e.inserted['node-name'] === node.nodeName);
  if (entry?.inserted === undefined) throw new ArgumentError(`QEMU no longer has drive ${JSON.stringify(node.drive)} (node ${node.nodeName})`);
  const limits: Record<string, number | string> = {};
  for (const key of [...REQUIRED_LIMITS, ...OPTIONAL_LIMITS]) {
    const value = entry.inserted[key];
    if (typeof value === 'number' || (typeof value === 'string' && key === 'group')) limits[key] = value;
  }
  for (const key of REQUIRED_LIMITS) limits[key] ??= 0;
  return limits;
}

/** block_set_io_throttle with `limits` (read with readIoLimits, changed where wanted). */
export async function setIoLimits(qmp: QmpExecutor, node: DriveNode, limits: IoLimits): Promise<void> {
  await qmp.execute('block_set_io_throttle', { ...node.throttleTarget, ...limits });
}

/** nbd-server-start on a Unix socket (one server per QEMU: blockdev-nbd.c refuses a second). */
export async function startNbdServer(qmp: QmpExecutor, socketPath: string): Promise<void> {
  await qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: socketPath } } });
}

export async function stopNbdServer(qmp: QmpExecutor): Promise<void> {
  await qmp.execute('nbd-server-stop');
}

export interface ExportOptions {
  /** Export id (QMP) and NBD export name; the same string. */
  readonly id: string;
  readonly nodeName: string;
  readonly writable: boolean;
  /** Dirty bitmaps of the node to export as `qemu:dirty-bitmap:NAME` (must be disabled). */
  readonly bitmaps?: readonly string[];
}

/**
 * block-export-add type nbd. A writable export of an inactive node (a destination started with
 * `-incoming`) activates it (block/export/export.c blk_exp_add: bdrv_invalidate_cache in 7.2,
 * bdrv_activate in 10.0 unless `allow-inactive`).
 */
export async function addExport(qmp: QmpExecutor, options: ExportOptions): Promise<void> {
  await qmp.execute('block-export-add', {
    type: 'nbd',
    id: options.id,
    'node-name': options.nodeName,
    name: options.id,
    writable: options.writable,
    ...(options.bitmaps !== undefined && options.bitmaps.length > 0 ? { bitmaps: options.bitmaps } : {}),
  });
}

/**
 * block-export-del, then waits until query-block-exports no longer lists it: an export goes
 * when its last client has disconnected (blk_exp_request_shutdown), and until then its bitmaps
 * stay busy.
 */
export async function deleteExport(qmp: QmpExecutor, id: string, timeoutMs = 10_000): Promise<void> {
  await qmp.execute('block-export-del', { id });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exports = await qmp.execute<{ id: string }[]>('query-block-exports');
    if (!exports.some((e) => e.id === id)) return;
    if (Date.now() > deadline) throw new QemuTimeoutError(`waiting for export ${JSON.stringify(id)} to go`, timeoutMs);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export async function addBitmap(qmp: QmpExecutor, nodeName: string, name: string, granularity: number): Promise<void> {
  await qmp.execute('block-dirty-bitmap-add', { node: nodeName, name, granularity });
}

export async function removeBitmap(qmp: QmpExecutor, nodeName: string, name: string): Promise<void> {
  await qmp.execute('block-dirty-bitmap-remove', { node: nodeName, name });
}

/**
 * Freezes bitmap `current` and starts `next` in one QMP transaction (qapi/transaction.json:
 * block-dirty-bitmap-add and block-dirty-bitmap-disable are transaction actions): a guest write
 * lands in exactly one of them, never in neither.
 */
export async function rotateBitmap(qmp: QmpExecutor, nodeName: string, current: string, next: string, granularity: number): Promise<void> {
  await qmp.execute('transaction', {
    actions: [
      { type: 'block-dirty-bitmap-add', data: { node: nodeName, name: next, granularity } },
      { type: 'block-dirty-bitmap-disable', data: { node: nodeName, name: current } },
    ],
  });
}
