import { basename } from 'node:path';
import { QubesDbClient, QUBESDB_DOM0_SOCKET_DIR, dom0SocketName } from '@odyssey/qubesdb';

type Command = 'read' | 'write' | 'rm' | 'multiread' | 'list' | 'watch';
const COMMANDS: readonly Command[] = ['read', 'write', 'rm', 'multiread', 'list', 'watch'];

export interface QubesDbCmdIo {
  /** Values printed raw (-r) are bytes, everything else text. */
  readonly stdout: (data: string | Buffer) => void;
  readonly stderr: (text: string) => void;
  /** The domain's daemon socket; default $QUBESDB_SOCKET or /var/run/qubes/qubesdb.sock. */
  readonly socketPath?: string;
  /** Where `-d DOMAIN` finds qubesdb.DOMAIN.sock; default $QUBESDB_SOCKET_DIR or /var/run/qubes. */
  readonly dom0SocketDir?: string;
}

interface Options {
  cmd?: Command;
  dest?: string;
  fullPath: boolean;
  raw: boolean;
  quiet: boolean;
  wait: boolean;
  removeAfter: boolean;
  watchCount: number;
  defaultValue?: string;
  args: string[];
}

const USAGE = (argv0: string): string =>
  `Usage: ${argv0} [-frq] [-c <command>] [-d <destination domain>] \n` +
  '       [command arguments]\n' +
  '  -f - print full path (affects reading commands)\n' +
  '  -r - print raw value (affects reading commands)\n' +
  '  -q - quiet - do not print error\n' +
  '  -c <command> - specify command\n' +
  '  -d <domain> - specify destination domain, available only in dom0\n' +
  '  -w - wait for any value (possibly empty)\n' +
  '  -x - remove the value after reading it (affects reading commands)\n' +
  '  -e, --default <default> - use <default> if the value does not exist\n' +
  '  -h - print this message\n' +
  '\n' +
  'Available commands:\n' +
  '  read path [path...] - read value(s)\n' +
  '  write path value [path value...] - write value(s)\n' +
  '  rm path [path...] - remove value(s)\n' +
  '  multiread path [path...] - read all entries matching given path\n' +
  '  list path - list paths matching given argument\n' +
  '  watch [-n N] path [path...] - watch given path(s) for modifications\n' +
  '    if -n given you can specify how many events should be received before terminating (default: 1, negative: infinite)\n';

class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

const commandOf = (name: string): Command | undefined => COMMANDS.find((c) => c === name);

/** Parses upstream's getopt string "hxc:d:n:e:frqw" (and --default), stopping at the first operand as getopt does with POSIXLY_CORRECT unset. */
function parse(argv0: string, argv: readonly string[], io: QubesDbCmdIo): Options {
  const dash = basename(argv0).lastIndexOf('-');
  const options: Options = {
    cmd: dash >= 0 ? commandOf(basename(argv0).slice(dash + 1)) : undefined,
    fullPath: false,
    raw: false,
    quiet: false,
    wait: false,
    removeAfter: false,
    watchCount: 1,
    args: [],
  };
  const fail = (message: string): never => {
    io.stderr(`${message}\n`);
    throw new Exit(1);
  };
  const fromName = options.cmd !== undefined;
  const operands: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') {
      operands.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--default')) {
      const value = arg.startsWith('--default=') ? arg.slice('--default='.length) : argv[++i];
      if (value === undefined) fail(`${argv0}: option '--default' requires an argument`);
      if (options.cmd !== 'read') fail('--default valid only for read command');
      options.defaultValue = value;
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') {
      operands.push(arg);
      continue;
    }
    for (let j = 1; j < arg.length; j++) {
      const flag = arg[j] ?? '';
      const takesValue = 'cdne'.includes(flag);
      let value: string | undefined;
      if (takesValue) {
        value = j + 1 < arg.length ? arg.slice(j + 1) : argv[++i];
        if (value === undefined) {
          io.stderr(`${argv0}: option requires an argument -- '${flag}'\n${USAGE(argv0)}`);
          throw new Exit(1);
        }
      }
      switch (flag) {
        case 'c':
          if (i !== 0 && !(i === 1 && j + 1 >= arg.length)) fail('-c must be first argument');
          if (fromName) fail('-c only valid for qubesdb-cmd');
          options.cmd = commandOf(value ?? '');
          break;
        case 'd':
          options.dest = value;
          break;
        case 'f':
          options.fullPath = true;
          break;
        case 'r':
          options.raw = true;
          break;
        case 'x':
          options.removeAfter = true;
          break;
        case 'q':
          options.quiet = true;
          break;
        case 'w':
          options.wait = true;
          break;
        case 'e':
          if (options.cmd !== 'read') fail('--default valid only for read command');
          options.defaultValue = value;
          break;
        case 'n':
          options.watchCount = Number.parseInt(value ?? '', 10) || 0;
          if (options.cmd !== 'watch') fail('-n valid only for watch command');
          break;
        case 'h':
          io.stderr(USAGE(argv0));
          throw new Exit(0);
        default:
          io.stderr(`${argv0}: invalid option -- '${flag}'\n${USAGE(argv0)}`);
          throw new Exit(1);
      }
      if (takesValue) break;
    }
  }
  options.args = operands;
  if (argv.length === 0 || options.cmd === undefined) {
    io.stderr(USAGE(argv0));
    throw new Exit(0);
  }
  return options;
}

/** A value as upstream prints it: printable ASCII as is, anything else as \xNN; raw with -r. */
function printable(value: Buffer, raw: boolean): string | Buffer {
  if (raw) return Buffer.concat([value, Buffer.from('\n')]);
  let out = '';
  for (const byte of value) {
    out +=
      byte >= 0x20 && byte < 0x80 ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return `${out}\n`;
}

/**
 * upstream's qubesdb-cmd: run as qubesdb-read, -write, -rm, -multiread,
 * -list or -watch (the name after the last '-'), or as qubesdb-cmd -c CMD.
 * Same options, output and exit codes: 0, 1 on failure, 2 when read found
 * no value (and nothing else failed).
 */
export async function runQubesDbCmd(
  argv0: string,
  argv: readonly string[],
  io: QubesDbCmdIo,
): Promise<number> {
  let options: Options;
  try {
    options = parse(argv0, argv, io);
  } catch (error) {
    if (error instanceof Exit) return error.code;
    throw error;
  }
  const { args, quiet } = options;
  const warn = (message: string): void => {
    if (!quiet) io.stderr(`${message}\n`);
  };
  const socket = options.dest
    ? `${io.dom0SocketDir ?? (process.env['QUBESDB_SOCKET_DIR'] || QUBESDB_DOM0_SOCKET_DIR)}/${dom0SocketName(options.dest)}`
    : io.socketPath;
  let client: QubesDbClient;
  try {
    client = await QubesDbClient.connect(socket);
  } catch {
    warn(`Failed connect to ${options.dest ?? 'local'} daemon`);
    return 1;
  }
  try {
    switch (options.cmd) {
      case 'read':
        return await read(client, options, io, warn);
      case 'write': {
        if (args.length % 2) {
          io.stderr('Invalid number of parameters\n');
          return 1;
        }
        let failed = 0;
        for (let i = 0; i < args.length; i += 2) {
          await client.write(args[i] ?? '', args[i + 1] ?? '').catch(() => {
            warn(`Failed to write ${args[i]}`);
            failed = 1;
          });
        }
        return failed;
      }
      case 'rm': {
        let failed = 0;
        for (const path of args) {
          // libqubesdb counts a path that was not there as removed, and so do its commands.
          if (
            !(await client.rm(path).then(
              () => true,
              () => false,
            ))
          ) {
            warn(`Failed to remove ${path}`);
            failed = 1;
          }
        }
        return failed;
      }
      case 'multiread': {
        let failed = 0;
        for (const prefix of args) {
          const entries = await client.multiread(prefix).catch(() => undefined);
          if (!entries) {
            warn(`Failed to read ${prefix}`);
            failed = 1;
            continue;
          }
          const cut = options.fullPath ? 0 : prefix.length;
          for (const [path, value] of entries) {
            io.stdout(`${path.slice(cut)} = `);
            io.stdout(printable(value, options.raw));
          }
        }
        return failed;
      }
      case 'list': {
        if (args.length !== 1) {
          io.stderr('LIST command accept only one path\n');
          return 1;
        }
        const prefix = args[0] ?? '';
        const paths = await client.list(prefix).catch(() => undefined);
        if (!paths) {
          warn('Failed to get entries list');
          return 1;
        }
        const cut = options.fullPath ? 0 : prefix.length;
        for (const path of paths) io.stdout(`${path.slice(cut)}\n`);
        return 0;
      }
      case 'watch': {
        if (args.length === 0) return 0;
        for (const path of args) {
          if (
            !(await client.watch(path).then(
              () => true,
              () => false,
            ))
          ) {
            warn(`Failed to setup watch on ${path}`);
            return 1;
          }
        }
        for (let left = options.watchCount; left !== 0; left--) {
          const fired = await client.watchEvent();
          if (fired === null) {
            warn('Failed to read watch');
            return 1;
          }
          io.stdout(`${fired}\n`);
        }
        return 0;
      }
      default:
        warn('Unknown command');
        return 1;
    }
  } finally {
    client.close();
  }
}

async function read(
  client: QubesDbClient,
  options: Options,
  io: QubesDbCmdIo,
  warn: (message: string) => void,
): Promise<number> {
  const { args } = options;
  if (options.defaultValue !== undefined && args.length !== 1) {
    io.stderr('--default only valid with exactly 1 path to read\n');
    return 1;
  }
  let failed = 0;
  let missing = false;
  for (const path of args) {
    let value = await client.read(path).catch(() => null);
    if (value === null) failed = 1;
    if (value === undefined && options.wait) {
      // Watch first, then read again: a write between the two is not missed.
      if (
        !(await client.watch(path).then(
          () => true,
          () => false,
        ))
      )
        failed = 1;
      while ((value = await client.read(path).catch(() => null)) == null) {
        if ((await client.watchEvent()) === null) {
          failed = 1;
          break;
        }
      }
    }
    if (value === undefined && options.defaultValue !== undefined) value = Buffer.from(options.defaultValue);
    if (value) {
      if (options.fullPath) io.stdout(`${path} = `);
      io.stdout(printable(value, options.raw));
    } else {
      warn(`Failed to read ${path}`);
      if (value === undefined) missing = true;
    }
    if (
      options.removeAfter &&
      !(await client.rm(path).then(
        () => true,
        () => false,
      ))
    )
      failed = 1;
  }
  return failed === 0 && missing ? 2 : failed;
}
