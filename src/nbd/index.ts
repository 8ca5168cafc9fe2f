/** The NBD client (docs/nbd.md): the socket glue, its errors, and the pure machines beneath it. */
export { NbdClient, type NbdConnectOptions } from './client.js';
export { NbdError, NbdProtocolError, NbdRefusedError, NbdCommandError, NbdConnectionError, NbdTimeoutError, type NbdErrorContext, type NbdRequestRef } from './errors.js';
export { Handshake, type BlockSizes, type HandshakeOptions, type HandshakeStep, type Negotiated } from './handshake.js';
export { Transmission, type Completion, type Extent, type RequestSpec, type TransmissionOptions } from './transmission.js';
export { NBD_STATE_DIRTY, NBD_STATE_HOLE, NBD_STATE_ZERO, TransmissionFlag } from './constants.js';
