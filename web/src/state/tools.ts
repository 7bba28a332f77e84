/**
 * The tools an agent can be given, as the worker's registry names them (activities/tools). The
 * API takes tool names as strings; tests/web/console-state.test.ts keeps this list equal to the
 * registry so the editor offers exactly what exists.
 */
export const AGENT_TOOLS: ReadonlyArray<{ name: string; label: string }> = [
  { name: 'knowledge_search', label: 'Search the knowledge base' },
  { name: 'request_human_input', label: 'Ask a person a question' },
  { name: 'schedule_follow_up', label: 'Schedule a follow-up' },
  { name: 'handoff_to_human', label: 'Hand the conversation to a person' },
  { name: 'crm_search_records', label: 'CRM: search records' },
  { name: 'crm_get_record', label: 'CRM: read a record' },
  { name: 'crm_add_note', label: 'CRM: add a note' },
  { name: 'crm_create_task', label: 'CRM: create a task' },
  { name: 'crm_update_stage', label: 'CRM: move a lead to a stage' },
];
