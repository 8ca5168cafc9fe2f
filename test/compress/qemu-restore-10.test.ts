import { restoreSuite } from '../helpers/compress-restore.js';

// QEMU 10.0's streams (bookworm-backports) through the container and back into a 10.0 destination.
restoreSuite([
  { fixture: 'i440fx-10.0', compress: ['-c', 'zstd'] },
  { fixture: 'q35-10.0', compress: ['-c', 'lz4', '--compact'] },
]);
