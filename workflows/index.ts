// The workflow bundle's entry point: every workflow the workers run is exported here.
export { agentRun } from './agent-run/index.js';
export { crmSync } from './crm-sync.js';
export { crmIntake } from './crm-intake.js';
