import { exchange, request, showBytes } from '../raw-socket.js';
import { fail, type Check } from '../check.js';

/** What a reply must be: exactly these bytes, or (where names, sizes or paths are the host's) a pattern. */
type Expected = string | RegExp;

const OK = '0\0';
const err = (type: string, message: string): string => `2\0${type}\0\0${message}\0`;

/** One request sent as raw bytes and its reply compared with upstream's capture (reference Appendix A). */
function bytes(id: string, raw: string, expected: Expected): Check {
  return {
    id: `api.${id}`,
    category: 'api',
    run: async (ctx) => {
      const reply = (await exchange(ctx.socket, raw)).toString('latin1');
      const matches = typeof expected === 'string' ? reply === expected : expected.test(reply);
      if (!matches) {
        const want = typeof expected === 'string' ? showBytes(expected) : String(expected);
        fail(`${showBytes(raw)}: expected ${want}, got ${showBytes(reply)}`);
      }
    },
  };
}

const req = request;

/** `admin.vm.property.List` of a TemplateVM and `admin.property.List`, as captured (reference §3.3, §3.5). */
const TEMPLATE_PROPERTIES =
  'autostart backup_timestamp debug default_user devices_denied dns gateway gateway6 icon include_in_backups ' +
  'installed_by_rpm ip ip6 kernel keyboard_layout klass label mac maxmem memory name provides_network qid ' +
  'qrexec_timeout shutdown_timeout start_time stubdom_mem stubdom_uuid stubdom_xid updateable uuid vcpus ' +
  'virt_mode visible_gateway visible_gateway6 visible_ip visible_ip6 visible_netmask xid appvm_default_bootmode ' +
  'audiovm bootmode default_dispvm guivm kernelopts management_dispvm netvm';
const GLOBAL_PROPERTIES =
  'check_updates_vm clockvm default_audiovm default_dispvm default_guivm default_kernel default_netvm ' +
  'default_pool default_pool_kernel default_pool_private default_pool_root default_pool_volatile ' +
  'default_qrexec_timeout default_shutdown_timeout default_template management_dispvm maxmem no_cpus ' +
  'stats_interval updatevm';

/**
 * Requests in order: the first create the qubes the later ones read and change (`work`, `newvm` from
 * the template `conf-api-tpl`), as in the state the reference captured its pairs in.
 */
export const apiByteChecks: readonly Check[] = [
  bytes('create-template', req('admin.vm.Create.TemplateVM+', 'dom0', 'name=conf-api-tpl label=black'), OK),
  bytes('set-default-template', req('admin.property.Set+default_template', 'dom0', 'conf-api-tpl'), OK),
  bytes('create-appvm', req('admin.vm.Create.AppVM+conf-api-tpl', 'dom0', 'name=work label=red'), OK),
  bytes('create-appvm-default-template', req('admin.vm.Create.AppVM+', 'dom0', 'name=newvm label=red'), OK),
  bytes(
    'vm-list-adminvm',
    req('admin.vm.List+', 'dom0'),
    /^0\0dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000\n/,
  ),
  bytes(
    'vm-list-one',
    req('admin.vm.List+', 'newvm'),
    /^0\0newvm class=AppVM state=Halted uuid=[0-9a-f-]{36}\n$/,
  ),
  bytes(
    'vm-list-bad-uuid',
    req('admin.vm.List+', 'uuid:1234'),
    err('QubesVMInvalidUUIDError', "VM UUID is not valid: '1234'"),
  ),
  bytes(
    'vm-list-bad-name',
    req('admin.vm.List+', '1bad'),
    err('QubesValueError', 'VM name cannot start with hyphen, underscore, dot or numbers'),
  ),
  bytes('framing-no-nul', 'admin.vm.List+ dom0 name dom0', ''),
  bytes(
    'framing-unexpected-payload',
    req('admin.vm.List+', 'dom0', 'unexpected'),
    err('ProtocolError', 'unexpected payload'),
  ),
  bytes(
    'property-get-no-arg',
    req('admin.vm.property.Get+', 'work'),
    err('ProtocolError', 'expected an argument'),
  ),
  bytes(
    'property-get-no-such',
    req('admin.vm.property.Get+nosuchprop', 'work'),
    err('QubesNoSuchPropertyError', "Invalid property 'nosuchprop' of work"),
  ),
  bytes(
    'property-set-int-empty',
    req('admin.vm.property.Set+memory', 'work'),
    err('QubesValueError', 'Failed to parse property value as int'),
  ),
  bytes(
    'property-set-int-negative',
    req('admin.vm.property.Set+memory', 'work', '-1'),
    err('QubesPropertyValueError', 'memory must be positive'),
  ),
  bytes(
    'property-set-netvm-no-network',
    req('admin.vm.property.Set+netvm', 'newvm', 'newvm'),
    err('QubesValueError', 'The newvm qube does not provide network'),
  ),
  bytes(
    'property-set-template-wrong-class',
    req('admin.vm.property.Set+template', 'newvm', 'work'),
    err('QubesPropertyValueError', "wrong VM class: domains['work'] is of type AppVM and not TemplateVM"),
  ),
  bytes(
    'property-set-default-dispvm-invalid',
    req('admin.vm.property.Set+default_dispvm', 'newvm', 'work'),
    err(
      'QubesPropertyValueError',
      "Cannot set invalid property to qube 'newvm', default_dispvm 'work' has template_for_dispvms set to False",
    ),
  ),
  bytes('property-set-vm-none', req('admin.vm.property.Set+netvm', 'work'), OK),
  bytes('property-get-vm-none', req('admin.vm.property.Get+netvm', 'work'), '0\0default=False type=vm '),
  bytes(
    'property-set-ip-invalid',
    req('admin.vm.property.Set+ip', 'work', '300.1.1.1'),
    err('QubesValueError', 'Failed to parse property value as IPv4Address'),
  ),
  // Upstream answers a plain ValueError with no bytes; reference Appendix B lets a daemon send a proper exception.
  bytes(
    'property-set-mac-invalid',
    req('admin.vm.property.Set+mac', 'work', 'zz'),
    /^$|^2\0Qubes(Property)?ValueError\0\0[^\0]+\0$/,
  ),
  bytes('property-set-virt-mode', req('admin.vm.property.Set+virt_mode', 'work', 'HVM'), OK),
  bytes(
    'property-get-virt-mode',
    req('admin.vm.property.Get+virt_mode', 'work'),
    '0\0default=False type=str hvm',
  ),
  bytes(
    'property-set-klass',
    req('admin.vm.property.Set+klass', 'work', 'AppVM'),
    err('QubesPropertyValueError', "property 'klass' on AppVM instance cannot be set"),
  ),
  bytes(
    'property-set-label-unknown',
    req('admin.vm.property.Set+label', 'work', 'nosuch'),
    err('QubesLabelNotFoundError', 'Label does not exist: nosuch'),
  ),
  bytes('property-set-label-index', req('admin.vm.property.Set+label', 'work', '3'), OK),
  bytes(
    'property-get-label',
    req('admin.vm.property.Get+label', 'work'),
    '0\0default=False type=label yellow',
  ),
  bytes(
    'property-set-bool-invalid',
    req('admin.vm.property.Set+autostart', 'work', 'maybe'),
    err('QubesValueError', "Invalid literal for boolean property: 'maybe'"),
  ),
  bytes(
    'property-set-kernel-slash',
    req('admin.vm.property.Set+kernel', 'work', 'a/b'),
    err('QubesPropertyValueError', "Kernel name cannot contain '/'"),
  ),
  bytes(
    'property-set-keyboard-layout',
    req('admin.vm.property.Set+keyboard_layout', 'work', 'us'),
    err('QubesPropertyValueError', 'invalid number of keyboard layout parameters'),
  ),
  bytes('property-getdefault-int', req('admin.vm.property.GetDefault+memory', 'work'), '0\0type=int 400'),
  bytes('property-getdefault-none', req('admin.vm.property.GetDefault+template', 'work'), OK),
  bytes(
    'property-help',
    req('admin.vm.property.Help+netvm', 'work'),
    // The doc strings are each daemon's own words (upstream renders its docstrings); the framing is not.
    /^0\0[^\0]+$/,
  ),
  bytes(
    'property-reset-template',
    req('admin.vm.property.Reset+template', 'work'),
    err(
      'QubesValueError',
      'Cannot unset template. You can set it to the current default (conf-api-tpl) instead',
    ),
  ),
  bytes(
    'global-property-getall',
    req('admin.property.GetAll+', 'dom0'),
    /^0\0check_updates_vm default=True type=bool True\n(.*\n)*default_template default=False type=vm conf-api-tpl\n/,
  ),
  bytes(
    'feature-get-missing',
    req('admin.vm.feature.Get+nope', 'newvm'),
    err('QubesFeatureNotFoundError', 'Feature not set for domain newvm: nope'),
  ),
  bytes(
    'feature-set-bad-name',
    req('admin.vm.feature.Set+bad/name', 'work', 'x'),
    err('ProtocolError', 'feature name contains illegal characters'),
  ),
  bytes('feature-set', req('admin.vm.feature.Set+conformance', 'newvm', 'yes'), OK),
  bytes('feature-get', req('admin.vm.feature.Get+conformance', 'newvm'), '0\0yes'),
  bytes('feature-list', req('admin.vm.feature.List+', 'newvm'), '0\0conformance\n'),
  bytes('feature-remove', req('admin.vm.feature.Remove+conformance', 'newvm'), OK),
  bytes('tag-get-unset', req('admin.vm.tag.Get+mytag', 'work'), '0\x000'),
  bytes('tag-set', req('admin.vm.tag.Set+mytag', 'newvm'), OK),
  bytes('tag-get-set', req('admin.vm.tag.Get+mytag', 'newvm'), '0\x001'),
  bytes(
    'tag-remove-missing',
    req('admin.vm.tag.Remove+nosuchtag', 'newvm'),
    err('QubesTagNotFoundError', 'Tag not set for domain newvm: nosuchtag'),
  ),
  bytes(
    'tag-list',
    req('admin.vm.tag.List+', 'newvm'),
    '0\0audiovm-dom0\ncreated-by-dom0\nguivm-dom0\nmytag\n',
  ),
  bytes(
    'label-list',
    req('admin.label.List+', 'dom0'),
    '0\0red\norange\nyellow\ngreen\ngray\nblue\npurple\nblack\n',
  ),
  bytes('label-create', req('admin.label.Create+mylabel', 'dom0', '0x123456'), OK),
  bytes('label-index', req('admin.label.Index+mylabel', 'dom0'), '0\x009'),
  bytes(
    'label-remove-builtin',
    req('admin.label.Remove+red', 'dom0'),
    err('ProtocolError', 'Can only remove custom labels'),
  ),
  bytes('label-remove-custom', req('admin.label.Remove+mylabel', 'dom0'), OK),
  bytes(
    'wrong-destination-adminvm-only',
    req('admin.label.List+', 'work'),
    err('ProtocolError', 'expected destination to be AdminVM'),
  ),
  bytes(
    'wrong-destination-not-adminvm',
    req('admin.vm.firewall.Get+', 'dom0'),
    err('ProtocolError', 'expected destination to not be AdminVM'),
  ),
  bytes(
    'create-exists',
    req('admin.vm.Create.AppVM+conf-api-tpl', 'dom0', 'name=work label=red'),
    err('QubesVMAlreadyExistsError', 'Qube already exists: work'),
  ),
  bytes(
    'create-no-such-template',
    req('admin.vm.Create.AppVM+nosuchtpl', 'dom0', 'name=x1 label=red'),
    err('QubesVMNotFoundError', "No such domain: 'nosuchtpl'"),
  ),
  bytes(
    'create-bad-label',
    req('admin.vm.Create.AppVM+', 'dom0', 'name=x2 label=nosuchlabel'),
    err('ProtocolError', 'Creation requested without key: label'),
  ),
  bytes(
    'create-template-on-template',
    req('admin.vm.Create.TemplateVM+conf-api-tpl', 'dom0', 'name=x3 label=red'),
    err('ProtocolError', 'TemplateVM cannot be based on template'),
  ),
  bytes(
    'volume-info-no-such',
    req('admin.vm.volume.Info+nosuchvol', 'work'),
    err('PermissionDenied', "Argument not in 'work volumes'"),
  ),
  bytes(
    'volume-info-private',
    req('admin.vm.volume.Info+private', 'newvm'),
    /^0\0pool=[^\n]+\nvid=appvms\/newvm\/private\nsize=2147483648\nusage=\d+\nrw=True\nsource=\npath=[^\n]+\nsave_on_stop=True\nsnap_on_start=False\nrevisions_to_keep=1\nephemeral=False\nis_outdated=False\n$/,
  ),
  bytes('volume-resize', req('admin.vm.volume.Resize+private', 'newvm', '3221225472'), OK),
  bytes('volume-info-resized', req('admin.vm.volume.Info+private', 'newvm'), /\nsize=3221225472\n/),
  bytes(
    'clone-to-bad-token',
    req('admin.vm.volume.CloneTo+private', 'newvm', 'badtoken'),
    err('QubesVolumeCopyTokenNotFoundError', "'Token to clone volume of qube was not found'"),
  ),
  bytes(
    'current-state-halted',
    req('admin.vm.CurrentState+', 'work'),
    '0\0mem=0 mem_static_max=0 cputime=0 power_state=Halted',
  ),
  bytes(
    'shutdown-halted',
    req('admin.vm.Shutdown+', 'newvm'),
    err('QubesVMNotStartedError', "Domain is powered off: 'newvm'"),
  ),
  bytes(
    'shutdown-bad-arg',
    req('admin.vm.Shutdown+bogus', 'work'),
    err('ProtocolError', 'Argument must match: force, wait'),
  ),
  bytes('remove-dom0', req('admin.vm.Remove+', 'dom0'), err('QubesVMInUseError', "'dom0' cannot be removed")),
  bytes(
    'remove-template-in-use',
    req('admin.vm.Remove+', 'conf-api-tpl'),
    err(
      'QubesVMInUseError',
      "Domain is in use: 'conf-api-tpl';  see 'journalctl -u qubesd -e' in dom0 for details",
    ),
  ),
  bytes('device-denied-add', req('admin.vm.device.denied.Add+', 'work', 'u******'), OK),
  bytes('device-denied-list', req('admin.vm.device.denied.List+', 'work'), '0\0u******'),
  bytes(
    'firewall-set',
    req(
      'admin.vm.firewall.Set+',
      'newvm',
      'action=accept dst4=1.2.3.4/32 proto=tcp dstports=80-80\naction=drop dsthost=example.com proto=udp dstports=53-54 comment=hello\naction=accept specialtarget=dns\naction=accept proto=icmp icmptype=8\naction=accept\n',
    ),
    OK,
  ),
  bytes(
    'firewall-get',
    req('admin.vm.firewall.Get+', 'newvm'),
    '0\0action=accept dst4=1.2.3.4/32 proto=tcp dstports=80-80\naction=drop dsthost=example.com proto=udp dstports=53-54 comment=hello\naction=accept specialtarget=dns\naction=accept proto=icmp icmptype=8\naction=accept\n',
  ),
  bytes(
    'property-list-template',
    req('admin.vm.property.List+', 'conf-api-tpl'),
    `0\0${TEMPLATE_PROPERTIES.split(' ').join('\n')}\n`,
  ),
  bytes(
    'property-list-global',
    req('admin.property.List+', 'dom0'),
    `0\0${GLOBAL_PROPERTIES.split(' ').join('\n')}\n`,
  ),
  bytes('volume-list', req('admin.vm.volume.List+', 'work'), '0\0root\nprivate\nvolatile\nkernel\n'),
  // In upstream's method table but without a handler there (reference §2.2), so refused as unknown.
  bytes(
    'method-not-implemented',
    req('admin.vm.volume.Snapshot+private', 'work'),
    /^2\0ProtocolError\0\0[^\0]*\0$/,
  ),
  bytes(
    'feature-set-on-template',
    req('admin.vm.feature.Set+inherited', 'conf-api-tpl', 'from-template'),
    OK,
  ),
  bytes(
    'feature-check-with-template',
    req('admin.vm.feature.CheckWithTemplate+inherited', 'work'),
    '0\0from-template',
  ),
  bytes('feature-prohibit-start', req('admin.vm.feature.Set+prohibit-start', 'newvm', 'conformance'), OK),
  bytes(
    'start-prohibited',
    req('admin.vm.Start+', 'newvm'),
    err('QubesException', 'Qube start is prohibited. Rationale: conformance'),
  ),
  bytes('notes-set', req('admin.vm.notes.Set+', 'newvm', 'conformance notes'), OK),
  bytes('notes-get', req('admin.vm.notes.Get+', 'newvm'), '0\0conformance notes'),
];
