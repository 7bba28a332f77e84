import { describe, expect, it } from 'vitest';
import { agentRulesSchema, asksForPerson, secondsUntilOpen, workingHoursSchema } from '../../lib/agent-rules.js';

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

describe('working hours', () => {
  const madrid = (intervals: { day: string; start: string; end: string }[]) => workingHoursSchema.parse({ timeZone: 'Europe/Madrid', intervals });

  it('are open inside an interval and count the seconds to the next opening outside, across the week, in the zone', () => {
    const hours = madrid([
      { day: 'mon', start: '09:00', end: '18:00' },
      { day: 'fri', start: '09:00', end: '13:00' },
    ]);
    // Monday 2026-12-07 10:00 in Madrid is 09:00 UTC.
    expect(secondsUntilOpen(hours, new Date('2026-12-07T09:00:00Z'))).toBe(0);
    // Monday 18:00 Madrid: closed; Friday 09:00 is 3 days 15 hours later.
    expect(secondsUntilOpen(hours, new Date('2026-12-07T17:00:00Z'))).toBe((3 * 24 + 15) * 3600);
    // Friday 13:30 Madrid: the next opening is Monday 09:00.
    expect(secondsUntilOpen(hours, new Date('2026-12-11T12:30:00Z'))).toBe((2 * 24 + 19) * 3600 + 30 * 60);
  });

  it('refuse overlapping intervals, an end before the start and an unknown time zone, naming the field', () => {
    const overlap = workingHoursSchema.safeParse({
      timeZone: 'Europe/Madrid',
      intervals: [
        { day: 'mon', start: '09:00', end: '13:00' },
        { day: 'mon', start: '12:00', end: '18:00' },
      ],
    });
    expect(overlap.error!.issues.map((i) => [i.path.join('.'), i.message])).toEqual([['intervals.1', 'overlaps intervals.0']]);
    const backwards = workingHoursSchema.safeParse({ timeZone: 'Europe/Madrid', intervals: [{ day: 'tue', start: '18:00', end: '09:00' }] });
    expect(backwards.error!.issues.map((i) => i.path.join('.'))).toEqual(['intervals.0.end']);
    const zone = workingHoursSchema.safeParse({ timeZone: 'Mars/Olympus', intervals: [{ day: 'tue', start: '09:00', end: '18:00' }] });
    expect(zone.error!.issues.map((i) => i.path.join('.'))).toEqual(['timeZone']);
  });
});
