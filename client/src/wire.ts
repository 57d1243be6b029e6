import { decodeReply } from '@odyssey/wire';

import { QubesDaemonAccessError, QubesDaemonCommunicationError, errorFromReply } from './errors.js';

export { encodeRequest, serviceName, type AdminCall } from '@odyssey/wire';

export const EMPTY_RESPONSE_MESSAGE = 'Got empty response from qubesd. See journalctl in dom0 for details.';

/** Returns the body of an OK reply, or throws the error an exception reply (or a malformed one) means. */
export function parseResponse(data: Buffer): Buffer {
  const reply = decodeReply(data);
  switch (reply.kind) {
    case 'ok':
      return reply.body;
    case 'exception':
      throw errorFromReply(reply.type, reply.message, reply.traceback);
    case 'empty':
      throw new QubesDaemonAccessError(EMPTY_RESPONSE_MESSAGE);
    case 'malformed':
      throw new QubesDaemonCommunicationError('Invalid response format');
  }
}
