/**
 * The qubes the lifecycle and guest checks create and use; odysseyd.ts writes the policy that lets
 * conf-mgmt manage the qubes it creates and call services of the others.
 */
export const QUBES = {
  template: 'conf-template',
  mgmt: 'conf-mgmt',
  peer: 'conf-peer',
  dvmTemplate: 'conf-dvm',
} as const;
