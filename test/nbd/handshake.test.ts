/**
 * The fixed newstyle handshake on hand-built server bytes (test/helpers/nbd-bytes.ts): what
 * the client sends, byte for byte; what it negotiated; every split point of the server's
 * transcript; and every way a server can get it wrong.
 */
import { describe, expect, test } from 'vitest';
import { NbdProtocolError, NbdRefusedError } from '../../src/nbd/errors.js';
import { Handshake, type HandshakeOptions, type Negotiated } from '../../src/nbd/handshake.js';
import * as B from '../helpers/nbd-bytes.js';

const PEER = 'unix:/test.sock export "disk"';
const SIZE = 64 * 1024 * 1024;
const FLAGS = B.TFLAG.HAS_FLAGS | B.TFLAG.SEND_FLUSH | B.TFLAG.SEND_FUA | B.TFLAG.SEND_WRITE_ZEROES;

/** Feeds `server` to a new handshake in the pieces `cuts` make; what it sent and negotiated. */
function run(options: Partial<HandshakeOptions>, server: Buffer, cuts: number[] = []): { sent: Buffer; negotiated: Negotiated | undefined; rest: Buffer | undefined } {
  const handshake = new Handshake({ peer: PEER, exportName: 'disk', ...options });
  const sent: Buffer[] = [];
  let negotiated: Negotiated | undefined;
  let rest: Buffer | undefined;
  let from = 0;
  for (const to of [...cuts, server.length]) {
    if (negotiated !== undefined) {
      // Over: what follows belongs to the transmission phase.
      rest = Buffer.concat([rest!, server.subarray(from, to)]);
      from = to;
      continue;
    }
    const step = handshake.receive(server.subarray(from, to));
    sent.push(...step.send);
    if (step.done) {
      negotiated = step.done.negotiated;
      rest = step.done.rest;
    }
    from = to;
  }
  return { sent: Buffer.concat(sent), negotiated, rest };
}

const CONTEXTS = ['base:allocation', 'qemu:dirty-bitmap:b0'];

/** A QEMU-like server granting structured replies, both contexts, and the export. */
const goodServer = (): Buffer =>
  Buffer.concat([
    B.greeting(0b11),
    B.ack(B.OPT.STRUCTURED_REPLY),
    B.metaContext(B.OPT.SET_META_CONTEXT, 7, 'base:allocation'),
    B.metaContext(B.OPT.SET_META_CONTEXT, 9, 'qemu:dirty-bitmap:b0'),
    B.ack(B.OPT.SET_META_CONTEXT),
    B.infoName('disk'),
    B.infoExport(SIZE, FLAGS),
    B.infoBlockSize(512, 4096, 32 * 1024 * 1024),
    B.ack(B.OPT.GO),
  ]);

const goodClient = (): Buffer =>
  Buffer.concat([B.clientFlags(0b11), B.option(B.OPT.STRUCTURED_REPLY), B.option(B.OPT.SET_META_CONTEXT, B.metaContextData('disk', CONTEXTS)), B.option(B.OPT.GO, B.goData('disk', [B.INFO.BLOCK_SIZE]))]);

describe('a server that grants everything', () => {
  test('the client sends exactly its flags, STRUCTURED_REPLY, SET_META_CONTEXT and GO', () => {
    const { sent, negotiated, rest } = run({ metaContexts: CONTEXTS }, goodServer());
    expect(sent.toString('hex')).toBe(goodClient().toString('hex'));
    expect(negotiated).toEqual({
      size: SIZE,
      flags: FLAGS,
      blockSizes: { minimum: 512, preferred: 4096, maximum: 32 * 1024 * 1024 },
      structuredReplies: true,
      contexts: new Map([
        ['base:allocation', 7],
        ['qemu:dirty-bitmap:b0', 9],
      ]),
      listed: undefined,
    });
    expect(rest).toEqual(Buffer.alloc(0));
  });

  test('every split point of the server transcript gives the same bytes and result', () => {
    const server = goodServer();
    const whole = run({ metaContexts: CONTEXTS }, server);
    for (let cut = 0; cut <= server.length; cut++) {
      const split = run({ metaContexts: CONTEXTS }, server, [cut]);
      expect(split.sent.equals(whole.sent), `cut at ${cut}`).toBe(true);
      expect(split.negotiated, `cut at ${cut}`).toEqual(whole.negotiated);
    }
    // And one byte at a time.
    const bytewise = run(
      { metaContexts: CONTEXTS },
      server,
      Array.from({ length: server.length }, (_, i) => i),
    );
    expect(bytewise.sent.equals(whole.sent)).toBe(true);
    expect(bytewise.negotiated).toEqual(whole.negotiated);
  });

  test('lent chunks: one buffer refilled for every piece gives the same, and a rest of its own', () => {
    const server = Buffer.concat([goodServer(), B.simpleReply(0, 1)]);
    const whole = run({ metaContexts: CONTEXTS }, server);
    for (const size of [1, 5, 19, 64, server.length]) {
      const handshake = new Handshake({ peer: PEER, exportName: 'disk', metaContexts: CONTEXTS });
      const lent = Buffer.alloc(size);
      const sent: Buffer[] = [];
      let done: { negotiated: Negotiated; rest: Buffer } | undefined;
      let rest: Buffer[] = [];
      for (let at = 0; at < server.length; at += size) {
        const n = server.copy(lent, 0, at, at + size);
        if (done) rest.push(Buffer.from(lent.subarray(0, n)));
        else {
          const step = handshake.receive(lent.subarray(0, n), true);
          sent.push(...step.send);
          if (step.done) {
            done = step.done;
            rest = [step.done.rest];
          }
        }
        lent.fill(0x5a);
      }
      expect(Buffer.concat(sent).equals(whole.sent), `pieces of ${size}`).toBe(true);
      expect(done?.negotiated).toEqual(whole.negotiated);
      expect(Buffer.concat(rest)).toEqual(B.simpleReply(0, 1));
    }
  });

  test('bytes after the final ACK are handed to the transmission phase', () => {
    const after = B.simpleReply(0, 1);
    const { rest } = run({ metaContexts: CONTEXTS }, Buffer.concat([goodServer(), after]));
    expect(rest).toEqual(after);
  });

  test('without meta contexts: no SET_META_CONTEXT; without NO_ZEROES from the server, none asked', () => {
    const server = Buffer.concat([B.greeting(0b01), B.ack(B.OPT.STRUCTURED_REPLY), B.infoExport(4096, 1), B.ack(B.OPT.GO)]);
    const { sent, negotiated } = run({}, server);
    expect(sent).toEqual(Buffer.concat([B.clientFlags(0b01), B.option(B.OPT.STRUCTURED_REPLY), B.option(B.OPT.GO, B.goData('disk', [3]))]));
    expect(negotiated).toMatchObject({ size: 4096, flags: 1, blockSizes: undefined, structuredReplies: true, contexts: new Map() });
  });

  test('LIST_META_CONTEXT before SET: every name the server lists', () => {
    const server = Buffer.concat([
      B.greeting(),
      B.ack(B.OPT.STRUCTURED_REPLY),
      B.metaContext(B.OPT.LIST_META_CONTEXT, 0, 'base:allocation'),
      B.metaContext(B.OPT.LIST_META_CONTEXT, 0, 'qemu:dirty-bitmap:b0'),
      B.metaContext(B.OPT.LIST_META_CONTEXT, 0, 'qemu:allocation-depth'),
      B.ack(B.OPT.LIST_META_CONTEXT),
      B.metaContext(B.OPT.SET_META_CONTEXT, 1, 'base:allocation'),
      B.ack(B.OPT.SET_META_CONTEXT),
      B.infoExport(SIZE, FLAGS),
      B.ack(B.OPT.GO),
    ]);
    const { sent, negotiated } = run({ metaContexts: ['base:allocation'], listQueries: [] }, server);
    expect(sent).toEqual(
      Buffer.concat([
        B.clientFlags(3),
        B.option(B.OPT.STRUCTURED_REPLY),
        B.option(B.OPT.LIST_META_CONTEXT, B.metaContextData('disk', [])),
        B.option(B.OPT.SET_META_CONTEXT, B.metaContextData('disk', ['base:allocation'])),
        B.option(B.OPT.GO, B.goData('disk', [3])),
      ]),
    );
    expect(negotiated?.listed).toEqual(['base:allocation', 'qemu:dirty-bitmap:b0', 'qemu:allocation-depth']);
  });

  test('a server without structured replies: simple replies when no context is wanted', () => {
    const server = Buffer.concat([B.greeting(), B.refuse(B.OPT.STRUCTURED_REPLY, B.REP_ERR.UNSUP), B.infoExport(SIZE, 1), B.ack(B.OPT.GO)]);
    expect(run({}, server).negotiated?.structuredReplies).toBe(false);
  });

  test('unknown info types are ignored; a maximum block size of 0xffffffff is no limit', () => {
    const unknownInfo = B.optionReply(B.OPT.GO, B.REP.INFO, Buffer.concat([B.u16(99), Buffer.from('whatever')]));
    const server = Buffer.concat([B.greeting(), B.ack(B.OPT.STRUCTURED_REPLY), unknownInfo, B.infoBlockSize(1, 4096, 0xffff_ffff), B.infoExport(SIZE, 1), B.ack(B.OPT.GO)]);
    expect(run({}, server).negotiated?.blockSizes).toEqual({ minimum: 1, preferred: 4096, maximum: 0xffff_ffff });
  });
});

describe('a hostile or refusing server', () => {
  const start = (): Buffer => Buffer.concat([B.greeting(), B.ack(B.OPT.STRUCTURED_REPLY)]);
  const afterSet = (): Buffer =>
    Buffer.concat([start(), B.metaContext(B.OPT.SET_META_CONTEXT, 1, 'base:allocation'), B.metaContext(B.OPT.SET_META_CONTEXT, 2, 'qemu:dirty-bitmap:b0'), B.ack(B.OPT.SET_META_CONTEXT)]);

  const cases: [string, Partial<HandshakeOptions>, Buffer, typeof NbdProtocolError | typeof NbdRefusedError, RegExp][] = [
    ['not NBDMAGIC', {}, Buffer.concat([Buffer.from('HTTP/1.1'), B.IHAVEOPT, B.u16(3)]), NbdProtocolError, /greeting magic 0x485454502f312e31/],
    ['an oldstyle server', {}, Buffer.concat([B.INIT_PASSWD, B.CLISERV_MAGIC, B.u16(0)]), NbdProtocolError, /oldstyle/],
    ['a second magic that is neither', {}, Buffer.concat([B.INIT_PASSWD, Buffer.from('IHAVEOPX'), B.u16(3)]), NbdProtocolError, /expected IHAVEOPT/],
    ['no fixed newstyle', {}, B.greeting(0), NbdRefusedError, /fixed newstyle/],
    ['an option reply with a bad magic', {}, Buffer.concat([B.greeting(), B.optionReply(8, 1, undefined, undefined, B.u64(0x1234))]), NbdProtocolError, /option reply magic 0x1234/],
    ['a reply for another option', {}, Buffer.concat([B.greeting(), B.ack(B.OPT.GO)]), NbdProtocolError, /NBD_OPT_STRUCTURED_REPLY: a reply for NBD_OPT_GO while NBD_OPT_STRUCTURED_REPLY was asked/],
    ['an option reply past the bound', {}, Buffer.concat([B.greeting(), B.optionReply(8, 1, Buffer.alloc(0), 0xffff_fff0)]), NbdProtocolError, /4294967280 bytes, past the bound/],
    ['an ACK with a payload', {}, Buffer.concat([B.greeting(), B.optionReply(8, 1, Buffer.alloc(3))]), NbdProtocolError, /ACK with 3 bytes/],
    ['META_CONTEXT in answer to STRUCTURED_REPLY', {}, Buffer.concat([B.greeting(), B.metaContext(8, 1, 'x')]), NbdProtocolError, /NBD_REP_META_CONTEXT is not a reply to NBD_OPT_STRUCTURED_REPLY/],
    [
      'structured replies refused while contexts are wanted',
      { metaContexts: ['base:allocation'] },
      Buffer.concat([B.greeting(), B.refuse(8, B.REP_ERR.UNSUP, 'no')]),
      NbdRefusedError,
      /refused structured replies.*"no"/,
    ],
    ['a context not asked for', { metaContexts: ['base:allocation'] }, Buffer.concat([start(), B.metaContext(10, 1, 'qemu:dirty-bitmap:x')]), NbdProtocolError, /"qemu:dirty-bitmap:x", which was not asked for/],
    ['a context twice', { metaContexts: ['base:allocation'] }, Buffer.concat([start(), B.metaContext(10, 1, 'base:allocation'), B.metaContext(10, 2, 'base:allocation')]), NbdProtocolError, /twice/],
    ['two contexts sharing an id', { metaContexts: CONTEXTS }, Buffer.concat([start(), B.metaContext(10, 1, CONTEXTS[0]!), B.metaContext(10, 1, CONTEXTS[1]!)]), NbdProtocolError, /share the id 1/],
    ['a META_CONTEXT without a name', { metaContexts: CONTEXTS }, Buffer.concat([start(), B.optionReply(10, 4, B.u32(1))]), NbdProtocolError, /no name/],
    ['a wanted context missing', { metaContexts: CONTEXTS }, Buffer.concat([start(), B.metaContext(10, 1, 'base:allocation'), B.ack(10)]), NbdRefusedError, /no meta context "qemu:dirty-bitmap:b0"/],
    [
      'SET_META_CONTEXT refused',
      { metaContexts: CONTEXTS },
      Buffer.concat([start(), B.refuse(10, B.REP_ERR.INVALID, 'bad query')]),
      NbdRefusedError,
      /refused NBD_OPT_SET_META_CONTEXT \(NBD_REP_ERR_INVALID\): "bad query"/,
    ],
    ['no such export', { metaContexts: CONTEXTS }, Buffer.concat([afterSet(), B.refuse(7, B.REP_ERR.UNKNOWN, "export 'disk' not present")]), NbdRefusedError, /no export "disk" \(NBD_REP_ERR_UNKNOWN\)/],
    ['GO acknowledged without NBD_INFO_EXPORT', {}, Buffer.concat([start(), B.ack(7)]), NbdProtocolError, /no export size/],
    ['NBD_INFO_EXPORT of the wrong size', {}, Buffer.concat([start(), B.optionReply(7, 3, Buffer.concat([B.u16(0), B.u64(1)]))]), NbdProtocolError, /NBD_INFO_EXPORT of 10 bytes/],
    ['an export past 2^53', {}, Buffer.concat([start(), B.infoExport(2n ** 60n, 1)]), NbdProtocolError, /past 2\^53/],
    ['block sizes that do not fit', {}, Buffer.concat([start(), B.infoBlockSize(3, 4096, 1 << 20)]), NbdProtocolError, /minimum 3/],
    ['a preferred block size below the minimum', {}, Buffer.concat([start(), B.infoBlockSize(4096, 512, 1 << 20)]), NbdProtocolError, /do not fit/],
    ['an INFO without a type', {}, Buffer.concat([start(), B.optionReply(7, 3, Buffer.alloc(1))]), NbdProtocolError, /no info type/],
  ];

  test.each(cases)('%s', (_name, options, server, Class, message) => {
    let caught: unknown;
    try {
      run(options, server);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(Class);
    expect((caught as Error).message).toMatch(message);
    expect((caught as Error).message).toMatch(/^nbd unix:\/test\.sock export "disk": /);
    expect((caught as NbdProtocolError).peer).toBe(PEER);
  });

  test('a flood of replies to one option is cut off', () => {
    const one = B.metaContext(B.OPT.LIST_META_CONTEXT, 0, 'base:allocation');
    const server = Buffer.concat([start(), ...Array.from({ length: 5000 }, () => one)]);
    expect(() => run({ listQueries: [] }, server)).toThrow(/more than 4096 replies/);
  });

  test('the refusal keeps the reply type and the server message', () => {
    try {
      run({}, Buffer.concat([start(), B.refuse(7, B.REP_ERR.UNKNOWN, 'nope')]));
      expect.unreachable();
    } catch (error) {
      expect(error).toMatchObject({ code: 'ERR_NBD_REFUSED', replyType: B.REP_ERR.UNKNOWN, serverMessage: 'nope', option: 'NBD_OPT_GO' });
    }
  });
});
