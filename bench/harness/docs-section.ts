import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const DOC = 'docs/BENCHMARKS.md';

/**
 * Replaces the part of docs/BENCHMARKS.md between `<!-- <marker>:begin -->`
 * and `<!-- <marker>:end -->` with `body`, or appends it under `heading`
 * (with `intro` below it) the first time. A bench keeps its latest run there.
 */
export function replaceDocSection(marker: string, heading: string, intro: string, body: string): void {
  if (!existsSync(DOC)) return;
  const begin = `<!-- ${marker}:begin -->`;
  const end = `<!-- ${marker}:end -->`;
  const text = readFileSync(DOC, 'utf8');
  const section = `${begin}\n${body}\n${end}`;
  const at = text.indexOf(begin);
  const next =
    at >= 0
      ? text.slice(0, at) + section + text.slice(text.indexOf(end) + end.length)
      : `${text.trimEnd()}\n\n${heading}\n${intro}\n\n${section}\n`;
  writeFileSync(DOC, next);
}
