/**
 * A walk's trail as text for messages, written as code would reach the
 * value: `args[1].cb`, `args[0].get("k")`, `[...args[2]][0]` (a Set's item).
 */
import { StepKind, type Walk } from './walk.js';

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** Where the value `walk` is visiting sits. */
export function pathOf(walk: Walk): string {
  const trail = walk.trail;
  let text = walk.root;
  for (let i = 0; i < trail.length; i += 3) {
    const key = trail[i + 1];
    const position = trail[i + 2] as number;
    switch (trail[i] as StepKind) {
      case StepKind.Index:
        text += `[${position}]`;
        break;
      case StepKind.Key:
        text += IDENTIFIER.test(key as string) ? `.${key}` : `[${JSON.stringify(key)}]`;
        break;
      case StepKind.MapKey:
        text = `[...${text}.keys()][${position}]`;
        break;
      case StepKind.MapValue:
        text = isNameable(key) ? `${text}.get(${nameOf(key)})` : `[...${text}.values()][${position}]`;
        break;
      case StepKind.SetItem:
        text = `[...${text}][${position}]`;
        break;
    }
  }
  return text;
}

function isNameable(key: unknown): boolean {
  return key === null || (typeof key !== 'object' && typeof key !== 'function' && typeof key !== 'symbol');
}

function nameOf(key: unknown): string {
  if (typeof key === 'string') return JSON.stringify(key);
  if (typeof key === 'bigint') return `${key}n`;
  return String(key);
}
