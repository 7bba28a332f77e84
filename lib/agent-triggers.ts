/** Agent triggers and lead threads: shared by the agents API (which validates and stores them) and the CRM intake (which fires them). */

/** An agent trigger as stored in agents.triggers (validated by the agents API). */
export type AgentTrigger = { event: 'lead_stage_entered'; stageId: string; pipelineId?: string; cooldownMinutes?: number } | { event: 'incoming_message' };

/** How long a stage trigger stays quiet for a lead after it fired, unless the trigger says otherwise. */
export const DEFAULT_TRIGGER_COOLDOWN_MINUTES = 60;

/** The conversation of a lead: one per (agent, connection, lead). */
export const leadThreadKey = (connectionId: string, leadExternalId: string) => `crm:${connectionId}:${leadExternalId}`;
