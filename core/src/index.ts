export { Daemon, type DaemonOptions } from './daemon/daemon.js';
