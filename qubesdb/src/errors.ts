/** A peer broke the QubesDB protocol: the connection it came from is not to be trusted further. */
export class QubesDbProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QubesDbProtocolError';
  }
}

/** A write or removal the database refuses (bad path, bad value, full). */
export class QubesDbError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QubesDbError';
  }
}
