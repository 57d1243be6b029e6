/** A peer broke the qrexec wire protocol; the connection it came from is not to be trusted further. */
export class QrexecProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QrexecProtocolError';
  }
}
