export {
  AccessDenied,
  PolicyNotFound,
  PolicySyntaxError,
  RequestError,
  formatLocation,
  type PolicyLocation,
} from './errors.js';
export {
  DOM0_UUID,
  DomainIndex,
  indexSystemInfo,
  parseSystemInfo,
  type IndexedDomain,
  type SystemInfo,
  type SystemInfoDomain,
} from './system-info.js';
export {
  defaultDispvmOf,
  expandToken,
  isDom0,
  parseToken,
  sameQube,
  tokenMatches,
  verifyIntended,
  type TokenContext,
  type TokenKind,
  type VmToken,
} from './tokens.js';
export {
  buildRule,
  formatRule,
  parseRuleLine,
  parseServiceRuleLine,
  validateServiceAndArgument,
  type ActionType,
  type Rule,
  type RuleAction,
} from './rule.js';
export {
  PolicyFileNotText,
  PolicyFileTooLarge,
  memoryPolicyFiles,
  nodePolicyFiles,
  type DirEntry,
  type PolicyFiles,
} from './files.js';
export { POLICY_LIMITS } from './budget.js';
export {
  PolicyParser,
  legacyCompatFiles,
  selectPolicyFiles,
  splitServiceName,
  type ParserOptions,
} from './parser.js';
export {
  DEFAULT_LEGACY_DIR,
  DEFAULT_POLICY_DIRS,
  loadPolicy,
  parsePolicyText,
  type LoadOptions,
  type LoadResult,
  type TextPolicyOptions,
} from './loader.js';
export { createRequest, type CallInit, type PolicyRequest, type RequestBase } from './request.js';
export {
  allowResponse,
  answerAsk,
  denyDecision,
  runningWithoutAutostart,
  type AllowDecision,
  type AskDecision,
  type DenyDecision,
  type PolicyDecision,
} from './resolution.js';
export { Policy, decide, outcomeOf, type Outcome, type PolicyState } from './evaluate.js';
export { LegacyPolicy, decideLegacy, parseLegacyRule, type LegacyRule } from './legacy.js';
export { PolicyStore, type PolicyStoreOptions } from './store.js';
export {
  AgentUnavailable,
  DEFAULT_POLICY_AGENT_SOCKET,
  POLICY_ASK_HEADER,
  POLICY_ASK_SERVICE,
  askRequestOf,
  callPolicyAgent,
  policyAgentSocket,
  settleAsk,
  type AskRequest,
} from './ask.js';
export {
  POLICY_AGENT_LIMITS,
  PolicyAgent,
  describeQuestion,
  interpretAnswer,
  parseAskRequest,
  type PolicyAgentLimits,
  type PolicyAgentOptions,
} from './agent.js';
export { DaemonCallError, QUBESD_INTERNAL_SOCKET, callDaemon, fetchSystemInfo } from './daemon-client.js';
export {
  main as policyCliMain,
  summaryLine,
  detailLines,
  type CliIo,
  type PolicyCliExtension,
} from './cli.js';
