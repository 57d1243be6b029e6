import { closeSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import type { Log } from '../log.js';
import type { App } from '../model/app.js';
import { SERVICE_PREFIX } from '../model/service-features.js';

/**
 * Upstream's services extension mirrors dom0's own `service.*` features as flag files, which
 * dom0's scripts test for: `<dir>/<service>` exists while the feature is true (Python's truth
 * of its string: any but the empty one) and not while it is false or unset. The daemon's host
 * stands for dom0. Files of services dom0 has no feature for are left alone, as upstream does.
 * As upstream's handler, the file is there before the call is answered (a few system calls on
 * a tmpfs); one that cannot be written is a warning, never a failed call.
 */
export function installDom0ServiceFlags(app: App, dir: string, log: Log): void {
  const apply = (service: string, on: boolean): void => {
    // Set features were checked; one loaded from a hand-edited qubes.xml was not.
    if (service.includes('/') || service === '.' || service === '..') return;
    const file = join(dir, service);
    try {
      if (on) {
        mkdirSync(dir, { recursive: true });
        closeSync(openSync(file, 'a'));
      } else {
        rmSync(file, { force: true });
      }
    } catch (e) {
      log('warn', `dom0 service flag ${file}: ${(e as Error).message}`);
    }
  };

  for (const [feature, value] of app.domains.byName('dom0')?.features.entries() ?? [])
    if (feature.startsWith(SERVICE_PREFIX)) apply(feature.slice(SERVICE_PREFIX.length), value !== '');

  app.events.subscribe((event) => {
    if (!event.subject?.isAdminVm) return;
    const change = /^domain-feature-(set|delete):service\.(.+)$/.exec(event.name);
    const service = change?.[2];
    if (service === undefined) return;
    apply(service, change?.[1] === 'set' && event.subject.features.get(`${SERVICE_PREFIX}${service}`) !== '');
  });
}
