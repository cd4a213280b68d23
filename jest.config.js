// Three tiers, as STYLE.md says: unit specs beside the source (no I/O), integration tests with real
// SQLite files and a real nats-server, fault tests that kill and pause real processes.
const swc = ['@swc/jest', { jsc: { parser: { syntax: 'typescript', decorators: true }, transform: { legacyDecorator: true, decoratorMetadata: true }, target: 'es2022' } }];
const moduleNameMapper = { '^@flotilla/(.*)$': '<rootDir>/libs/$1/src/index.ts' };
const common = { transform: { '^.+\\.ts$': swc }, moduleNameMapper, testEnvironment: 'node' };
module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/libs/**/*.spec.ts', '<rootDir>/apps/**/*.spec.ts'] },
    { ...common, displayName: 'integration', testMatch: ['<rootDir>/test/integration/**/*.test.ts'] },
    { ...common, displayName: 'fault', testMatch: ['<rootDir>/test/fault/**/*.test.ts'] },
    // Against a real kube-apiserver + etcd (scripts/k8s-tools.sh). @kubernetes/client-node 1.x and
    // its OIDC dependencies are ES modules: this project alone transforms them to CommonJS.
    {
      ...common,
      displayName: 'k8s',
      testMatch: ['<rootDir>/test/k8s/**/*.test.ts'],
      globalSetup: '<rootDir>/test/k8s/global-setup.ts',
      transform: { '^.+\\.(ts|js|mjs)$': swc },
      transformIgnorePatterns: ['/node_modules/(?!(@kubernetes/client-node|openid-client|oauth4webapi|jose)/)'],
    },
  ],
};
