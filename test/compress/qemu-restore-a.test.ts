import { restoreSuite } from '../helpers/compress-restore.js';

restoreSuite([
  { fixture: 'idle', compress: ['-c', 'zstd'] },
  { fixture: 'dirty', compress: ['-c', 'zstd', '--dedup'] },
  { fixture: 'dirty', compress: ['-c', 'lz4', '--compact'] },
]);
