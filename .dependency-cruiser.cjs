/** Architecture rules of DESIGN.md, checked in CI by `npm run lint`. */
module.exports = {
  forbidden: [
    {
      name: 'core-imports-no-backend',
      comment: 'core reaches hypervisors only through its HAL: no backend, transport or libvirt client',
      severity: 'error',
      from: { path: '^core/' },
      to: {
        path: [
          '^backends/',
          '^vchan/',
          '^libvirt/',
          '^libvirt-hal/',
          'node_modules/@odyssey/(backend-|vchan|libvirt)',
        ],
      },
    },
    {
      name: 'backend-imports-only-hal-vchan-libvirt',
      comment:
        'a backend imports core (HAL types), @odyssey/vchan, @odyssey/libvirt and @odyssey/libvirt-hal only',
      severity: 'error',
      from: { path: '^backends/([^/]+)/' },
      to: {
        path: ['^client/', '^agent/', '^conformance-tests/', '^backends/'],
        pathNot: ['^backends/$1/'],
      },
    },
    {
      name: 'backend-uses-core-hal-only',
      comment: 'backends may use the HAL of core, nothing else of it',
      severity: 'error',
      from: { path: '^backends/' },
      to: { path: '^core/src/', pathNot: '^core/src/hal/' },
    },
    {
      name: 'libvirt-hal-imports-only-hal-and-libvirt',
      comment: 'what libvirt-based backends share: the HAL of core and @odyssey/libvirt, never a backend',
      severity: 'error',
      from: { path: '^libvirt-hal/' },
      to: {
        path: ['^core/src/(?!hal/)', '^backends/', '^vchan/', '^client/', '^agent/', '^conformance-tests/'],
      },
    },
    {
      name: 'libvirt-knows-no-qubes',
      severity: 'error',
      from: { path: '^libvirt/' },
      to: { path: ['^core/', '^backends/', '^vchan/', '^client/', '^agent/', '^libvirt-hal/'] },
    },
    {
      name: 'conformance-talks-like-a-client',
      comment: 'the suite reaches the daemon over the socket and qrexec only',
      severity: 'error',
      from: { path: '^conformance-tests/src/' },
      to: { path: ['^core/src/(?!hal/)', '^backends/', '^libvirt/', '^libvirt-hal/'] },
    },
    {
      name: 'client-is-standalone',
      comment: 'the client runs inside management domains: it depends on no server code',
      severity: 'error',
      from: { path: '^client/src/' },
      to: { path: ['^core/', '^backends/', '^libvirt/', '^libvirt-hal/'] },
    },
    {
      name: 'no-circular',
      comment: 'import cycles that exist at run time (type-only imports are erased and may point back)',
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
