import type { SystemInfo, SystemInfoDomain } from '../../src/policy/index.js';

const vm = (over: Partial<SystemInfoDomain> & { uuid: string }): SystemInfoDomain => ({
  tags: [],
  type: 'AppVM',
  default_dispvm: 'default-dvm',
  template_for_dispvms: false,
  power_state: 'Halted',
  ...over,
});

/** "T": the system of upstream's parser tests. */
export const T: SystemInfo = {
  domains: {
    dom0: vm({
      tags: ['dom0-tag'],
      type: 'AdminVM',
      power_state: 'Running',
      uuid: '00000000-0000-0000-0000-000000000000',
    }),
    'test-vm1': vm({
      tags: ['tag1', 'tag2'],
      power_state: 'Running',
      uuid: 'c9024a97-9b15-46cc-8341-38d75d5d421b',
    }),
    'test-vm2': vm({ tags: ['tag2'], power_state: 'Running', uuid: 'b3eb69d0-f9d9-4c3c-ad5c-454500303ea4' }),
    'test-vm3': vm({
      tags: ['tag3'],
      template_for_dispvms: true,
      uuid: 'fa6d56e8-a89d-4106-aa62-22e172a43c8b',
    }),
    'test-vm4': vm({ template_for_dispvms: true, uuid: '91e4fe8d-083b-4ddf-ad7b-fb4ebac537b9' }),
    'default-dvm': vm({ template_for_dispvms: true, uuid: 'f3e538bd-4427-4697-bed7-45ef3270df21' }),
    'default-mgmt-dvm': vm({
      internal: true,
      template_for_dispvms: true,
      uuid: 'f3e538bd-4427-4697-bed7-45ef3270df22',
    }),
    'internal-vm': vm({ internal: true, uuid: 'f3e538bd-4427-4697-bed7-45ef3270df23' }),
    'test-invalid-dvm': vm({
      tags: ['tag1', 'tag2'],
      default_dispvm: 'test-vm1',
      uuid: 'c4fa3586-a6b6-4dc4-bdda-c9e7375a12b5',
    }),
    'test-no-dvm': vm({
      tags: ['tag1', 'tag2'],
      default_dispvm: null,
      uuid: '53a450b9-a454-4416-8adb-46812257ad29',
    }),
    'test-template': vm({
      tags: ['tag1', 'tag2'],
      type: 'TemplateVM',
      uuid: 'a9fe2b04-9fd5-4e95-be20-162433d64de0',
    }),
    'test-standalone': vm({
      tags: ['tag1', 'tag2'],
      type: 'StandaloneVM',
      uuid: '6d7a02b5-532b-467f-b9fb-6596bae03c33',
    }),
    'test-remotevm1': vm({
      tags: ['relayvm-test-relayvm1'],
      type: 'RemoteVM',
      relayvm: 'test-relayvm1',
      transport_rpc: 'qubesair.SSHProxy',
      default_dispvm: null,
      power_state: 'Running',
      uuid: '3d225b39-88e9-4696-8978-b27c1360e041',
    }),
    'test-relayvm1': vm({
      default_dispvm: null,
      power_state: 'Running',
      uuid: '355304b8-bd5e-4699-9a2b-b6864fc26f6b',
    }),
    'test2-remotevm1': vm({
      tags: ['relayvm-test2-relayvm1'],
      type: 'RemoteVM',
      relayvm: 'test2-relayvm1',
      default_dispvm: null,
      power_state: 'Running',
      uuid: 'c7825251-1bb2-4070-aec9-3a8dd13befbf',
    }),
    'test2-remotevm2': vm({
      tags: ['relayvm-test2-relayvm2'],
      type: 'RemoteVM',
      relayvm: 'test2-relayvm2',
      transport_rpc: 'qubesair.SSHProxy',
      default_dispvm: null,
      power_state: 'Running',
      uuid: '6cd84a95-4336-445f-b125-6ecca1a40353',
    }),
    'test2-vm1': vm({
      default_dispvm: null,
      power_state: 'Running',
      uuid: 'c798d6db-360f-473a-b902-1cc58ffd3ab0',
    }),
    'test2-relayvm1': vm({
      default_dispvm: null,
      power_state: 'Running',
      uuid: '41435947-21f8-41d9-9079-26df31f03d97',
    }),
    'test2-relayvm2': vm({
      default_dispvm: null,
      power_state: 'Running',
      uuid: '044767bb-081e-4260-b7be-35e77c36d510',
    }),
  },
};

/** "A": a management qube and the qubes it manages. */
export const A: SystemInfo = {
  domains: {
    dom0: vm({ type: 'AdminVM', power_state: 'Running', uuid: '00000000-0000-0000-0000-000000000000' }),
    mgmtvm: vm({ power_state: 'Running', uuid: '5a2d4d5e-3f8c-4b57-9a43-0c1d3e0e0001' }),
    work: vm({ tags: ['created-by-mgmtvm'], uuid: '5a2d4d5e-3f8c-4b57-9a43-0c1d3e0e0002' }),
    personal: vm({ uuid: '5a2d4d5e-3f8c-4b57-9a43-0c1d3e0e0003' }),
    'default-dvm': vm({ template_for_dispvms: true, uuid: '5a2d4d5e-3f8c-4b57-9a43-0c1d3e0e0004' }),
  },
};

/** The admin policy tree that goes with A. */
export const ADMIN_POLICY: Record<string, string> = {
  __main__: [
    '!include-service admin.vm.List            *  include/admin-global-ro',
    '!include-service admin.vm.property.Get    *  include/admin-local-ro',
    '!include-service admin.vm.property.Set    *  include/admin-local-rwx',
    '!include-service admin.vm.Create.AppVM    *  include/admin-global-rwx',
    'admin.vm.Create.AppVM +fedora-25 mgmtvm @adminvm allow target=dom0',
  ].join('\n'),
  'include/admin-local-rwx':
    'mgmtvm @tag:created-by-mgmtvm allow target=dom0\nmgmtvm mgmtvm allow target=dom0\n',
  'include/admin-local-ro': '!include include/admin-local-rwx\n',
  'include/admin-global-rwx': '',
  'include/admin-global-ro':
    '!include include/admin-global-rwx\nmgmtvm @adminvm allow target=dom0\nmgmtvm @tag:created-by-mgmtvm allow target=dom0\n',
};

/** The qubes of the Admin API announcement's demos. */
export const DEMO: SystemInfo = {
  domains: {
    dom0: vm({ type: 'AdminVM', power_state: 'Running', uuid: '00000000-0000-0000-0000-000000000000' }),
    'test-mon': vm({ power_state: 'Running', uuid: '7e0f2c44-1b1a-4f55-8d0e-6a7d3f1a0001' }),
    'test-mgmt': vm({ power_state: 'Running', uuid: '7e0f2c44-1b1a-4f55-8d0e-6a7d3f1a0002' }),
    'managed-work': vm({ tags: ['created-by-test-mgmt'], uuid: '7e0f2c44-1b1a-4f55-8d0e-6a7d3f1a0003' }),
    'sys-net': vm({ uuid: '7e0f2c44-1b1a-4f55-8d0e-6a7d3f1a0004' }),
    'default-dvm': vm({ template_for_dispvms: true, uuid: '7e0f2c44-1b1a-4f55-8d0e-6a7d3f1a0005' }),
  },
};

export const UUID = (info: SystemInfo, name: string): string => info.domains[name]?.uuid ?? '';

/** The allow reply for a qube target, as qrexec-daemon receives it. */
export function allowLines(target: string, requested: string, uuid: string, user = 'DEFAULT'): string {
  return [
    `user=${user}`,
    'result=allow',
    `target=${target}`,
    `target_uuid=${uuid}`,
    'autostart=True',
    `requested_target=${requested}`,
  ].join('\n');
}

export function dom0Lines(requested: string, user = 'DEFAULT'): string {
  return [
    `user=${user}`,
    'result=allow',
    'target=dom0',
    'autostart=True',
    `requested_target=${requested}`,
  ].join('\n');
}
