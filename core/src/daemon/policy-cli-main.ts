#!/usr/bin/env node
import { policyCliMain, type PolicyCliExtension } from '@odyssey/qrexec';

import { writeAdminPolicy } from '../api/admin-policy.js';
import { METHODS } from '../api/method-table.js';

/** `odyssey-policy`: the policy engine's `eval`, plus `generate-admin`, a product of the method table. */
const generateAdmin: PolicyCliExtension = (program, io) => {
  program
    .command('generate-admin')
    .description(
      "write the default Admin API policy and its four includes, generated from the daemon's method table",
    )
    .argument('<dir>', 'policy.d directory to write into')
    .option('--overwrite-includes', 'replace include files that already exist (they hold the grants)')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .action(async (dir: string, options: { overwriteIncludes?: boolean }) => {
      const written = await writeAdminPolicy(dir, METHODS, {
        overwriteIncludes: options.overwriteIncludes === true,
      });
      io.out(written.map((f) => `${f}\n`).join(''));
    });
};

process.exitCode = await policyCliMain(process.argv, undefined, generateAdmin);
