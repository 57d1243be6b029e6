import type { Writable } from 'node:stream';
import { decodePeerInfo, encodePeerInfo } from './codec.js';
import { MsgType, QREXEC_MIN_PROTOCOL_VERSION, QREXEC_PROTOCOL_VERSION } from './constants.js';
import { QrexecProtocolError } from './errors.js';
import { writeMessage, type MessageReader } from './framing.js';

/**
 * MSG_HELLO exchange: send ours, then read the peer's. The two ring
 * directions are independent, so this order interoperates with peers that
 * read first (reference §4.2). Returns the version both sides speak.
 */
export async function exchangeHello(
  channel: Writable,
  reader: MessageReader,
  localVersion: number = QREXEC_PROTOCOL_VERSION,
): Promise<number> {
  await writeMessage(channel, MsgType.HELLO, encodePeerInfo(localVersion));
  const message = await reader.expect();
  if (message.type !== MsgType.HELLO) {
    throw new QrexecProtocolError(`expected MSG_HELLO, got 0x${message.type.toString(16)}`);
  }
  return negotiateVersion(localVersion, decodePeerInfo(message.payload));
}

export function negotiateVersion(localVersion: number, remoteVersion: number): number {
  const version = Math.min(localVersion, remoteVersion);
  if (version < QREXEC_MIN_PROTOCOL_VERSION) {
    throw new QrexecProtocolError(
      `incompatible qrexec protocol version ${remoteVersion} (need at least ${QREXEC_MIN_PROTOCOL_VERSION})`,
    );
  }
  return version;
}
