/** Architecture rules of DESIGN.md, checked in CI by `npm run lint` (scripts/depcruise-selftest.sh plants violations). */
const OURS = [
  '^hal/',
  '^wire/',
  '^qrexec/',
  '^qubesdb/',
  '^core/',
  '^vchan/',
  '^libvirt/',
  '^libvirt-hal/',
  '^client/',
  '^agent/',
  '^backends/',
  '^conformance-tests/',
];
const except = (...keep) => OURS.filter((p) => !keep.includes(p));

module.exports = {
  forbidden: [
    {
      name: 'nothing-imports-core',
      comment: 'core is the daemon: nothing outside it imports it',
      severity: 'error',
      from: { pathNot: '^core/' },
      to: { path: '^core/' },
    },
    {
      name: 'hal-imports-nothing-of-ours',
      severity: 'error',
      from: { path: '^hal/' },
      to: { path: except('^hal/') },
    },
    {
      name: 'wire-imports-nothing-of-ours',
      severity: 'error',
      from: { path: '^wire/' },
      to: { path: except('^wire/') },
    },
    {
      name: 'qrexec-imports-only-hal',
      comment: 'the qrexec protocol and the policy engine know nothing of the Admin API or the daemon',
      severity: 'error',
      from: { path: '^qrexec/' },
      to: { path: except('^qrexec/', '^hal/') },
    },
    {
      name: 'qubesdb-imports-only-hal',
      comment: 'QubesDB is its own small protocol, as upstream keeps it (qubes-core-qubesdb)',
      severity: 'error',
      from: { path: '^qubesdb/' },
      to: { path: except('^qubesdb/', '^hal/') },
    },
    {
      name: 'core-imports-hal-qrexec-wire',
      comment: 'core reaches hypervisors only through the HAL: no backend, transport or libvirt client',
      severity: 'error',
      from: { path: '^core/' },
      to: { path: except('^core/', '^hal/', '^qrexec/', '^qubesdb/', '^wire/') },
    },
    {
      name: 'core-layers-point-one-way',
      comment:
        'inside core: model <- storage <- lifecycle <- api <- daemon; persist and backup beside, never imported by the model',
      severity: 'error',
      from: { path: '^core/src/model/' },
      to: { path: '^core/src/(storage|lifecycle|api|daemon|persist|backup)/' },
    },
    {
      name: 'core-storage-below-lifecycle',
      severity: 'error',
      from: { path: '^core/src/storage/' },
      to: { path: '^core/src/(lifecycle|api|daemon|backup)/' },
    },
    {
      name: 'core-lifecycle-below-api',
      severity: 'error',
      from: { path: '^core/src/(lifecycle|persist|backup)/' },
      to: { path: '^core/src/(api|daemon)/' },
    },
    {
      name: 'core-api-below-daemon',
      severity: 'error',
      from: { path: '^core/src/api/' },
      to: { path: '^core/src/daemon/' },
    },
    {
      name: 'backend-imports-hal-vchan-libvirt',
      comment:
        'a backend imports @odyssey/hal, @odyssey/vchan, @odyssey/libvirt and @odyssey/libvirt-hal, never another backend (the process backend also runs the agent as its domains)',
      severity: 'error',
      from: { path: '^backends/([^/]+)/' },
      to: {
        path: except('^hal/', '^vchan/', '^libvirt/', '^libvirt-hal/', '^agent/'),
        pathNot: ['^backends/$1/'],
      },
    },
    {
      name: 'only-the-process-backend-runs-the-agent',
      severity: 'error',
      from: { path: '^backends/', pathNot: '^backends/process/' },
      to: { path: '^agent/' },
    },
    {
      name: 'libvirt-hal-imports-hal-and-libvirt',
      comment: 'what libvirt-based backends share: the HAL and @odyssey/libvirt, never a backend',
      severity: 'error',
      from: { path: '^libvirt-hal/' },
      to: { path: except('^libvirt-hal/', '^hal/', '^libvirt/') },
    },
    {
      name: 'libvirt-knows-no-qubes',
      severity: 'error',
      from: { path: '^libvirt/' },
      to: { path: except('^libvirt/') },
    },
    {
      name: 'vchan-imports-only-hal',
      severity: 'error',
      from: { path: '^vchan/src/' },
      to: { path: except('^vchan/', '^hal/') },
    },
    {
      name: 'agent-imports-hal-qrexec-vchan',
      comment:
        'the guest agent carries the qrexec and QubesDB protocols and the vchan transports, nothing of the daemon',
      severity: 'error',
      from: { path: '^agent/src/' },
      to: { path: except('^agent/', '^hal/', '^qrexec/', '^qubesdb/', '^vchan/') },
    },
    {
      name: 'client-is-standalone',
      comment: 'the client runs inside management domains: it depends on the wire protocol only',
      severity: 'error',
      from: { path: '^client/src/' },
      to: { path: except('^client/', '^wire/') },
    },
    {
      name: 'conformance-talks-like-a-client',
      comment:
        'the suite reaches the daemon over the socket and qrexec only; it loads backends through the HAL loader like the daemon does',
      severity: 'error',
      from: { path: '^conformance-tests/src/' },
      to: { path: except('^conformance-tests/', '^hal/', '^client/', '^agent/', '^vchan/', '^wire/') },
    },
    {
      name: 'no-cycle-across-folders',
      comment: 'no import cycle may span two folders, type-only imports included',
      severity: 'error',
      from: { path: '^(.+)/[^/]+$' },
      to: { circular: true, via: { pathNot: '^$1/[^/]+$' } },
    },
    {
      name: 'no-circular',
      comment: 'no import cycle that exists at run time (type-only imports are erased)',
      severity: 'error',
      from: {},
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: ['/dist/', '\\.d\\.ts$'] },
    tsPreCompilationDeps: true,
    // Workspace packages resolve to their sources, so rules see which files they really reach.
    tsConfig: { fileName: 'tsconfig.depcruise.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
    },
  },
};
