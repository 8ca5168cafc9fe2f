import { restoreSuite } from '../helpers/compress-restore.js';

restoreSuite([
  { fixture: 'xbzrle', compress: ['-c', 'zstd', '--compact'] },
  { fixture: 'xbzrle', compress: ['-c', 'zlib'] },
  { fixture: 'compress', compress: ['-c', 'zstd'] },
  { fixture: 'block', compress: ['-c', 'lz4', '-j', '1'] },
]);
