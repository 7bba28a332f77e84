import { describe, expect, it } from 'vitest';
import { agentRulesSchema, asksForPerson } from '../../lib/agent-rules.js';

describe('the team rules schema and the lead-asks-for-a-person check', () => {
  it('recognizes a lead asking for a person, in several languages, and not ordinary sentences', () => {
    for (const text of [
      'Can I talk to a human please?',
      'I want to speak with a real person',
      'live agent',
      'Quiero hablar con una persona',
      'Posso falar com um atendente?',
      'Позовите оператора',
      'Ich möchte mit einem Menschen sprechen',
      'Je veux parler à un conseiller',
    ]) {
      expect(asksForPerson(text), text).toBe(true);
    }
    for (const text of ['I will talk to my wife about it', 'How much is the human-sized chair?', 'Do you ship to Porto?', 'My manager approved the budget']) {
      expect(asksForPerson(text), text).toBe(false);
    }
  });

  it('rejects a negative delay and an unknown status, naming the field', () => {
    const bad = agentRulesSchema.partial().safeParse({ responseDelaySeconds: -1, status: 'sleeping' });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues.map((i) => i.path.join('.')).sort()).toEqual(['responseDelaySeconds', 'status']);
  });
});
