/**
 * A complete small migration stream built by hand (no production encoder), with every kind of
 * record, and the guest RAM it must produce.
 */
import { Bytes, configuration, footer, header, sectionStart } from './stream-bytes.js';
import { PAGE, compressedBytes, delta, eosBytes, memSizeBytes, pageBytes, pattern, xbzrleBytes, zeroBytes, zlibPage, F, word } from './ram-bytes.js';

export interface SampleStream {
  bytes: Buffer;
  /** Final contents of each RAMBlock. */
  ram: Record<string, Buffer>;
  /** Counts a report must give. */
  counts: { normal: number; zero: number; xbzrle: number; compressed: number; iterations: number; devices: number };
}

export function sampleStream(): SampleStream {
  const blocks = [
    { idstr: 'pc.ram', length: 8 * PAGE },
    { idstr: '/rom@etc/acpi/tables', length: 2 * PAGE },
  ];
  const ram: Record<string, Buffer> = { 'pc.ram': Buffer.alloc(8 * PAGE), '/rom@etc/acpi/tables': Buffer.alloc(2 * PAGE) };
  const pc = ram['pc.ram']!;
  const b = new Bytes();
  header(b);
  configuration(b, 'pc-i440fx-7.2');

  // START: block list
  sectionStart(b, 1, 2, 'ram', 0, 4).raw(memSizeBytes(blocks)).raw(eosBytes());
  footer(b, 2);

  // PART 1: pages, a zero page, a same-byte page, a page in the second block
  b.u8(0x02).be32(2);
  for (let i = 0; i < 4; i++) {
    b.raw(pageBytes(i === 0 ? 'pc.ram' : null, i * PAGE, pattern(i)));
    pattern(i).copy(pc, i * PAGE);
  }
  b.raw(zeroBytes(null, 4 * PAGE, 0));
  b.raw(zeroBytes(null, 5 * PAGE, 0xaa));
  pc.fill(0xaa, 5 * PAGE, 6 * PAGE);
  b.raw(pageBytes('/rom@etc/acpi/tables', PAGE, pattern(50)));
  pattern(50).copy(ram['/rom@etc/acpi/tables']!, PAGE);
  b.raw(eosBytes());
  footer(b, 2);

  // PART 2: an XBZRLE delta on page 1, a zlib page at 6, page 0 becomes zero
  b.u8(0x02).be32(2);
  const change = Buffer.from('migstream!');
  b.raw(xbzrleBytes('pc.ram', PAGE, delta([[100, change]])));
  change.copy(pc, PAGE + 100);
  b.raw(compressedBytes(null, 6 * PAGE, zlibPage(pattern(6))));
  pattern(6).copy(pc, 6 * PAGE);
  b.raw(zeroBytes(null, 0, 0));
  pc.fill(0, 0, PAGE);
  b.raw(eosBytes());
  footer(b, 2);

  // END: the last page
  b.u8(0x03)
    .be32(2)
    .raw(pageBytes('pc.ram', 7 * PAGE, pattern(7)))
    .raw(eosBytes());
  pattern(7).copy(pc, 7 * PAGE);
  footer(b, 2);

  // device state, two sections
  sectionStart(b, 4, 3, 'timer', 0, 2).raw(new Bytes().be64(12345).u8(1).build());
  footer(b, 3);
  sectionStart(b, 4, 4, 'cpu_common', 0, 1).raw([0, 0, 0, 0, 0x7e, 0, 0, 0, 4, 0x42]);
  footer(b, 4);
  b.u8(0x00);
  const json = JSON.stringify({
    page_size: 4096,
    devices: [
      {
        name: 'timer',
        instance_id: 0,
        vmsd_name: 'timer',
        version: 2,
        fields: [
          { name: 'cpu_ticks_offset', type: 'int64', size: 8 },
          { name: 'enabled', type: 'bool', size: 1 },
        ],
      },
      { name: 'cpu_common', instance_id: 0, vmsd_name: 'cpu_common', version: 1, fields: [{ name: 'data', type: 'buffer', size: 10 }] },
    ],
  });
  b.u8(0x06).be32(json.length).raw(json);
  return {
    bytes: b.build(),
    ram,
    counts: { normal: 6, zero: 3, xbzrle: 1, compressed: 1, iterations: 4, devices: 2 },
  };
}

/** A RAM word for tests that need a damaged stream. */
export { word, F };
