import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { KvmGuestTransport, type KvmGuestTransportOptions } from '@odyssey/vchan';

/** The vchan serial port as a Linux guest names it (COM2, see VCHAN_SERIAL_PORT). */
export const GUEST_SERIAL_DEVICE = '/dev/ttyS1';

const run = promisify(execFile);

/**
 * A guest's end of vchan over its serial port: the KVM transport's channel multiplexer on a tty.
 * A tty cooks what crosses it (echo, line editing, CR/LF, flow control characters) unless it is
 * raw, so the port is made raw first: then it is a byte pipe like a virtio-serial port.
 */
export async function openSerialGuestTransport(
  devicePath = GUEST_SERIAL_DEVICE,
  options: Omit<KvmGuestTransportOptions, 'devicePath'> = {},
): Promise<KvmGuestTransport> {
  await run('stty', ['-F', devicePath, 'raw', '-echo', '-ixon', '-ixoff', '-crtscts', 'clocal']);
  return KvmGuestTransport.open({ ...options, devicePath });
}
