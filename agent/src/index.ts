export { QrexecAgent, type QrexecAgentOptions } from './agent.js';
export { runClientVm, type ClientVmOptions } from './client-vm.js';
export { runExecRequest, type ExecRequestContext } from './exec-request.js';
export { createAgentTransport, type AgentTransportOptions } from './transport.js';
export { listenForTriggers, type TriggerFromClient } from './trigger-socket.js';
export { DomainQubesDb, type DomainQubesDbOptions } from './qubesdb-daemon.js';
export { runQubesDbCmd, type QubesDbCmdIo } from './qubesdb-cmd.js';
